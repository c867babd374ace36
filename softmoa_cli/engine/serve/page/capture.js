// An AudioWorklet processor that posts each block of its input's first channel to the page.
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    if (inputs[0].length) this.port.postMessage(inputs[0][0].slice());
    return true;
  }
}

registerProcessor("capture", Capture);
