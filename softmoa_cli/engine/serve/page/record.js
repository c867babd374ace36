// Recording from the microphone as a 16-bit mono WAV the server reads (MediaRecorder gives
// webm/opus, which it cannot): Web Audio captures the samples and they are encoded here.

export class Recorder {
  constructor(onTick) {
    this.onTick = onTick;   // called with the seconds recorded, a few times a second
    this.recording = null;
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("this browser cannot record here: recording needs https or localhost");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      throw new Error(`no microphone to record from (${error.message})`);
    }
    const context = new AudioContext();
    try {
      await context.audioWorklet.addModule("/page/capture.js");
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      context.close();
      throw new Error(`cannot record in this browser (${error.message})`);
    }
    const capture = new AudioWorkletNode(context, "capture", { numberOfOutputs: 0 });
    const chunks = [];
    capture.port.onmessage = (event) => chunks.push(event.data);
    context.createMediaStreamSource(stream).connect(capture);
    const seconds = () => chunks.reduce((sum, chunk) => sum + chunk.length, 0) / context.sampleRate;
    const timer = setInterval(() => this.onTick(seconds()), 200);
    this.recording = { stream, context, chunks, timer };
    this.onTick(0);
  }

  // Stop and give the recording as a WAV blob.
  async stop() {
    const { stream, context, chunks, timer } = this.recording;
    this.recording = null;
    clearInterval(timer);
    stream.getTracks().forEach((track) => track.stop());
    await context.close();
    if (!chunks.length) throw new Error("the recording is empty: the microphone gave no sound");
    return wav(chunks, context.sampleRate);
  }
}

// Float samples in [-1, 1] (a list of Float32Arrays) -> a 16-bit PCM mono WAV blob.
function wav(chunks, rate) {
  const samples = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * samples));
  const ascii = (offset, text) => [...text].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true);         // the fmt chunk's size
  view.setUint16(20, 1, true);          // PCM
  view.setUint16(22, 1, true);          // one channel
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);   // bytes per second
  view.setUint16(32, 2, true);          // bytes per frame
  view.setUint16(34, 16, true);         // bits per sample
  ascii(36, "data");
  view.setUint32(40, 2 * samples, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (const sample of chunk) {
      view.setInt16(offset, Math.round(Math.max(-1, Math.min(1, sample)) * 32767), true);
      offset += 2;
    }
  }
  return new Blob([view], { type: "audio/wav" });
}
