"""The names of the files in a run folder (torch-free, so that a command checks a run folder
before torch loads).

    RUN/
      run.json            RunInfo: data set, method, folds, backbone reference, command, finished
      config.yaml         the effective RunConfig
      metrics.json        RunMetrics: every fold's epochs and test result
      log.csv             one EpochRow per epoch of every fold
      README.md           the model card
      backbone/           a randomly initialised backbone, kept with its run
      [fold-K/]adapter.safetensors, adapter.json   the adapter files of a fold (its best epoch)
"""

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.csv"
CARD_FILE = "README.md"
RANDOM_DIR = "backbone"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
