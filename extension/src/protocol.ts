// Generated from server/protocol/ by `make protocol` (python -m deepdive.protocol --write extension/src/protocol.ts).
// Do not edit: change the Python definition and regenerate (a test checks they agree).

export const PROTOCOL_VERSION = 1;

/** Lists both sides show (server/vocabulary.py). */
export const Vocabularies = {
  trainPrecisions: ['auto', 'fp32', 'bf16', 'fp16'] as const,
  gradCompressions: ['auto', 'none', 'fp16', 'bf16', 'powersgd', 'topk'] as const,
  quantizeModes: ['int8', 'int8-dynamic', 'int8-static', 'int8-weight', 'int4-weight'] as const,
  compressTargets: ['x86', 'arm'] as const,
  pruneImportances: ['l1', 'l2', 'taylor', 'bn'] as const,
  tuneSamplers: ['tpe', 'gp', 'cmaes', 'random'] as const,
  tunePruners: ['asha', 'hyperband-quarter', 'hyperband', 'median', 'none'] as const,
  tuneDirections: ['minimize', 'maximize'] as const,
  tuneValues: ['last', 'best'] as const,
  tuneTrialStates: ['waiting', 'running', 'pruned', 'complete', 'fail'] as const,
  compressSteps: ['original', 'prune', 'layers', 'distill', 'quantize'] as const,
  codegenBackends: ['auto', 'builtin', 'transformers', 'llamacpp', 'openai-compatible'] as const,
  frameworks: ['torch', 'tensorflow'] as const,
  devices: ['auto', 'cpu', 'cuda'] as const,
};

export type TrainPrecision = (typeof Vocabularies.trainPrecisions)[number];
export type GradCompression = (typeof Vocabularies.gradCompressions)[number];
export type QuantizeMode = (typeof Vocabularies.quantizeModes)[number];
export type CompressTarget = (typeof Vocabularies.compressTargets)[number];
export type PruneImportance = (typeof Vocabularies.pruneImportances)[number];
export type TuneSampler = (typeof Vocabularies.tuneSamplers)[number];
export type TunePruner = (typeof Vocabularies.tunePruners)[number];
export type TuneDirection = (typeof Vocabularies.tuneDirections)[number];
export type TuneValue = (typeof Vocabularies.tuneValues)[number];
export type TrialState = (typeof Vocabularies.tuneTrialStates)[number];
export type CodegenBackend = (typeof Vocabularies.codegenBackends)[number];
export type Framework = (typeof Vocabularies.frameworks)[number];
export type Device = (typeof Vocabularies.devices)[number];

/** The daemon's identity: answers `deepdive/version`. */
export interface VersionResult {
  version: string;
  python: string;
  pid: number;
  /** Seconds since the epoch when the daemon process started. */
  startedAt: number;
  /** Bumped whenever a payload of the protocol changes incompatibly (`PROTOCOL_VERSION`). */
  protocol: number;
}

export interface DoctorParams {
  /** Probe torch again instead of answering from the daemon's cached probe. */
  refresh?: boolean;
}

export interface PythonInfo {
  version: string;
  executable: string;
  platform: string;
  implementation: string;
}

export interface HostInfo {
  hostname: string;
  cpuModel: string;
  physicalCores: number | null;
  logicalCores: number;
  memoryTotalGib: number;
  /** The CPU has native bf16 (avx512_bf16 or AMX): bf16 autocast pays off on it. */
  cpuBf16: boolean;
}

export interface TorchInfo {
  installed: boolean;
  version?: string | null;
  cudaAvailable?: boolean | null;
  cudaVersion?: string | null;
  deviceCount?: number | null;
  /** Why torch could not be inspected, when it could not. */
  error?: string | null;
}

export interface GpuDevice {
  index: number;
  name: string;
  uuid: string;
  memoryTotalMib: number;
  computeCapability?: string | null;
}

export interface GpuInfo {
  available: boolean;
  devices?: GpuDevice[];
  driverVersion?: string | null;
  nvmlVersion?: string | null;
  /** The exact reason there are no GPUs, e.g. 'NVML library not found'. */
  reason?: string | null;
}

export interface PackageInfo {
  name: string;
  purpose: string;
  installed: boolean;
  version?: string | null;
}

/** One matmul throughput the deep environment check measured. */
export interface MatmulFigure {
  device: string;
  name: string;
  dtype: string;
  size: number;
  gflops: number;
}

/** The newest successful deep environment check of this state folder (its job's result). */
export interface DeepCheckSummary {
  jobId: string;
  measuredAt: number;
  matmul?: MatmulFigure[];
  torch?: string | null;
  /** Seconds `import torch` took in the check's process. */
  importS?: number | null;
}

/** Answers `deepdive/doctor` and `deepdive doctor --json`. */
export interface DoctorReport {
  deepdiveVersion: string;
  python: PythonInfo;
  host: HostInfo;
  torch: TorchInfo;
  gpus: GpuInfo;
  packages: PackageInfo[];
  /** Where this daemon keeps its SQLite state (job history). */
  stateDir?: string | null;
  probedAt?: number;
  /** The newest successful deep check (Deepdive: Run Deep Check / `deepdive doctor --deep`), if any. */
  deepCheck?: DeepCheckSummary | null;
}

export interface JobStartParams {
  /** One of the kinds the daemon knows (`deepdive/jobs/kinds`); no arbitrary command lines. */
  kind: string;
  /** The kind's options (`JobOptionTypes[kind]`); the daemon checks them when the job starts. */
  options?: JobOptions;
  title?: string | null;
  /** Wall-clock limit; the job's process group is killed when it passes. */
  timeoutS?: number | null;
  /** Resident-memory limit of the job's whole process tree. */
  memoryLimitMib?: number | null;
  /** Show LSP work-done progress (with cancel) when the client supports it. */
  progress?: boolean;
}

export interface JobInfo {
  id: string;
  kind: string;
  title: string;
  state: 'running' | 'succeeded' | 'failed' | 'cancelled' | 'lost';
  argv: string[];
  cwd: string;
  createdAt: number;
  pid?: number | null;
  startedAt?: number | null;
  endedAt?: number | null;
  exitCode?: number | null;
  /** Why it ended the way it did (cancelled by the user, timed out, out of memory, exit code). */
  reason?: string | null;
  /** Last reported fraction done, 0..1. */
  progress?: number | null;
  /** Last progress message. */
  message?: string | null;
  /** The job's structured result (its last `result` event). */
  result?: Record<string, unknown> | null;
  /** The options it was started with (its kind's `JobOptionTypes`, as sent); null for jobs older than this field. */
  options?: Record<string, unknown> | null;
}

export interface JobListParams {
  limit?: number;
}

export interface JobList {
  jobs: JobInfo[];
}

export interface JobIdParams {
  id: string;
}

export interface OutputLine {
  stream: 'stdout' | 'stderr';
  text: string;
  t: number;
}

export interface JobLog {
  id: string;
  lines: OutputLine[];
  /** Older lines were dropped: the store keeps the last lines of each job only. */
  truncated: boolean;
}

export interface JobKind {
  kind: string;
  title: string;
  description: string;
  /** Jobs that run workspace code are refused in an untrusted workspace. */
  runsUserCode: boolean;
}

export interface JobKindList {
  kinds: JobKind[];
}

/** Where the daemon's telemetry hub listens (127.0.0.1; the token is new at each daemon start). */
export interface HubInfo {
  running: boolean;
  url?: string | null;
  /** What jobs get in DEEPDIVE_HUB: the /ingest websocket URL with the token. */
  ingestUrl?: string | null;
  /** The /stream websocket URL with the token, for dashboards. */
  streamUrl?: string | null;
  token?: string | null;
  /** Why the hub is not running, when it is not. */
  reason?: string | null;
  /** The dashboard page for a browser (http://127.0.0.1:PORT/?token=...): *Open Dashboard in Browser*. */
  dashboardUrl?: string | null;
}

export interface GenerateParams {
  /** What to write, in a sentence (English or Chinese); at most 65,536 characters. */
  prompt: string;
  /** Overrides what the prompt says; null: the prompt's choice, else PyTorch. */
  framework?: Framework | null;
  /** `auto` or null: the default model of the registry (`deepdive model default`), else `builtin`. */
  backend?: CodegenBackend | null;
  /** `transformers`: a local Hugging Face model directory; `llamacpp`: a GGUF file. */
  modelPath?: string | null;
  /** `openai-compatible`: the server's base URL (localhost unless `allow_remote`). */
  endpoint?: string | null;
  /** `openai-compatible`: the model name the server knows; `auto`: a registered model's name instead of the default. */
  model?: string | null;
  allowRemote?: boolean;
  /** Run the generated program's checks (parse, imports, `--smoke` in a sandbox, properties). */
  verify?: boolean;
  /** Let the `--smoke` run see the GPU. */
  allowGpu?: boolean;
  workDoneToken?: number | string | null;
  /** Chunks of code and check results arrive as `$/progress` with this token (GeneratePartial). */
  partialResultToken?: number | string | null;
}

/** One verification check of a generated program. */
export interface GenerateCheck {
  name: string;
  ok: boolean;
  detail?: string;
  seconds?: number | null;
}

/** One property the prompt states, judged against the generated program (see deepdive.codegen.spec). */
export interface PropertyCheck {
  /** The property: task, framework, input_shape, outputs, family, layer_count, has_layer, no_layer, precision, distributed or loss. */
  name: string;
  /** Its stated value (JSON): "semantic-segmentation", [1, 28, 28], 10, "Dropout", ["Conv2d", 3], true, ... */
  expected: unknown;
  /** `met`: checked and holds; `failed`: checked and does not hold; `not_checked`: no check could tell. */
  status: 'met' | 'failed' | 'not_checked';
  /** What was seen, in one line: "model has 2 Dropout modules (features.3, head.1)". */
  detail?: string;
  /** The prompt's words that state it ("without dropout"). */
  text?: string;
  /** The property and its value in a few words, for lists: "no_layer Dropout", "outputs 10", "input_shape 1×28×28", "layer_count 3 Conv2d". */
  label?: string;
}

export interface GenerateResult {
  /** The complete program. */
  code: string;
  backend: string;
  framework: string;
  /** What the prompt was understood as (task, architecture, shapes, features). */
  intent: Record<string, unknown>;
  /** True only when every check passed, every property the prompt states was checked and met, and nothing of the prompt was left not understood. */
  verified: boolean;
  checks?: GenerateCheck[];
  /** Repair rounds a model backend needed (0: the first program passed). */
  rounds?: number;
  seconds?: number;
  /** A suggested file name for "Generate into New File". */
  filename?: string | null;
  /** Why the result is not verified (a failed check or property, properties not checked, words not understood, verification skipped), or why there is no program, in one line. */
  message?: string | null;
  /** Each property the prompt states, checked-and-met, checked-and-failed or not checked. */
  properties?: PropertyCheck[];
  /** The request's stated properties as the parser read them (a Spec's JSON). */
  understoodAs?: Record<string, unknown> | null;
  /** Words of the prompt no property took: unknown task or architecture words, unplaced numbers. */
  notUnderstood?: string[];
  /** Stated properties the builtin generator cannot honour; with the builtin backend there is then no program, and the message says what a local model would add. */
  gaps?: string[];
}

/** Rewrite the defaults of a script's `suggest(...)` calls to a study's best parameters. */
export interface TuneApplyParams {
  /** The script (absolute, or relative to the workspace). */
  path: string;
  /** Parameter name -> value, e.g. a finished tune job's `result['bestParams']`. */
  params: Record<string, unknown>;
  /** The document's current text when the editor has unsaved changes (else the file is read); at most 2,097,152 characters. */
  text?: string | null;
}

/** A replacement in the document: zero-based lines and UTF-16 character offsets, as in LSP. */
export interface TextEditData {
  startLine: number;
  startCharacter: number;
  endLine: number;
  endCharacter: number;
  newText: string;
}

export interface TuneApplyResult {
  /** Only the default values change; nothing else in the file moves. */
  edits: TextEditData[];
  /** Parameters whose default was rewritten. */
  changed: string[];
  /** Parameters whose default already had the best value. */
  unchanged?: string[];
  /** Parameters with no `suggest("name", ...)` call in the script. */
  missing?: string[];
}

export interface ModelListParams {
  /** Also look for models not added yet: a running Ollama, LM Studio's folders, the Hugging Face cache. */
  discover?: boolean;
}

/** Speed measured on this machine (`deepdive model bench`), cached in the model registry. */
export interface ModelSpeed {
  /** Seconds from the request to the first token, the model already loaded. */
  ttftS: number;
  /** Tokens per second after the first. */
  tokensPerS: number;
  tokens: number;
  device: string;
  measuredAt: number;
  threads?: number | null;
}

/** A local code model: registered, or found (on disk, in Ollama) and not added yet. */
export interface ModelInfo {
  name: string;
  kind: 'gguf' | 'hf-folder' | 'ollama';
  registered: boolean;
  isDefault?: boolean;
  /** What the model says it is ("Qwen2.5 Coder 0.5B Instruct · qwen2 · Q4_K_M"). */
  title?: string;
  sizeBytes?: number | null;
  /** The GGUF file or model folder (gguf, hf-folder). */
  path?: string | null;
  /** The server's URL (ollama). */
  endpoint?: string | null;
  /** The model's name on the server (ollama). */
  model?: string | null;
  speed?: ModelSpeed | null;
  /** Why it cannot be used now (its file was deleted), in one line. */
  problem?: string | null;
}

export interface ModelList {
  models: ModelInfo[];
  /** The registry file. */
  registry: string;
  /** The model `auto` uses; null: the builtin generator. */
  default?: string | null;
  /** What was found at Ollama's address, or why nothing was, in one line. */
  ollama?: string | null;
}

export interface ModelSetDefaultParams {
  /** The model `auto` uses from now on; null: the builtin generator. */
  name?: string | null;
  /** A found GGUF file or model folder to add first (as `name`). */
  path?: string | null;
  /** A found Ollama's URL, with `model`, to add first (as `name`). */
  endpoint?: string | null;
  model?: string | null;
}

export interface CheckpointListParams {
  /** Checkpoint stores outside the workspace to list too (absolute, or relative to the workspace). */
  paths?: string[];
}

/** One checkpoint of a run, as its manifest describes it (sizes in bytes). */
export interface CheckpointStep {
  name: string;
  step: number;
  /** Seconds since the epoch when it was saved. */
  time: number;
  /** The chunks it references, on disk (chunks shared with other checkpoints counted in full). */
  storedBytes: number;
  /** What this save added to the store (the chunks it wrote); the rest was deduplicated. */
  newBytes: number;
  /** Its tensors' bytes, uncompressed: the logical size. */
  rawBytes: number;
  tensors: number;
  metrics: Record<string, number>;
  /** The most recently saved checkpoint (what a resume tries first). */
  latest: boolean;
  lossy?: string | null;
  /** The last `deepdive/checkpoints/verify` of this checkpoint, as it is now on disk; null: not verified since it was saved (or since its manifest changed). */
  verified?: 'ok' | 'corrupt' | null;
  verifiedAt?: number | null;
  /** With `corrupt`: the first problem found, in one line. */
  problem?: string | null;
}

/** A checkpoint store: the `checkpoint_dir` of a training run. */
export interface CheckpointRun {
  /** The store's directory (absolute). */
  path: string;
  /** The directory relative to the workspace (absolute when outside it). */
  name: string;
  /** Oldest step first. */
  checkpoints: CheckpointStep[];
  /** Chunks and manifests on disk. */
  diskBytes: number;
  /** The checkpoints' tensors, uncompressed, summed over the checkpoints. */
  rawBytes: number;
  /** Checkpoints not listed: their manifest is unreadable or fails its checksum (verify says why). */
  damaged: string[];
  /** The script arguments of the train job named by `script`. */
  args: string[];
  /** That job's processes per node (1 when no job is known). */
  nproc: number;
  /** That job's torchrun restarts (0 when no job is known). */
  maxRestarts: number;
  /** raw_bytes / disk_bytes: what deduplication and compression save together (as `deepdive ckpt ls`). */
  ratio?: number | null;
  /** The training script of the newest train job of this workspace that was running when a checkpoint here was saved: what `deepdive/checkpoints/resume` runs when given no script. */
  script?: string | null;
  /** Why this store could not be read, in one line. */
  error?: string | null;
}

export interface CheckpointList {
  runs: CheckpointRun[];
  /** The workspace scan stopped at its limit of folders: stores deeper or further may be missing. */
  truncated: boolean;
}

export interface CheckpointVerifyParams {
  /** The store's directory. */
  store: string;
  /** A step, a name or `latest`; null: every checkpoint. */
  checkpoint?: string | null;
}

export interface CheckpointProblem {
  checkpoint: string;
  /** Empty: the manifest itself (unreadable, or it fails its checksum). */
  tensor: string;
  chunk: string;
  reason: string;
}

export interface CheckpointVerifyResult {
  store: string;
  checkpoints: string[];
  ok: boolean;
  problems: CheckpointProblem[];
  /** Manifests written before manifests carried a checksum: their chunks are checked, they pass. */
  unchecked: string[];
  seconds: number;
}

export interface CheckpointExportParams {
  store: string;
  /** A step, a name or `latest`. */
  checkpoint: string;
  /** FILE.pt or FILE.safetensors (absolute, or relative to the workspace). */
  out: string;
  /** Export only this part of the state, e.g. `model` (names then fit model.load_state_dict). */
  key?: string | null;
  /** Overwrite `out`. */
  force?: boolean;
}

export interface CheckpointExportResult {
  path: string;
  checkpoint: string;
  tensors: number;
  bytes: number;
  format: string;
}

export interface CheckpointResumeParams {
  store: string;
  /** The training script; null: the run's `script` (the one a train job saved there with). */
  path?: string | null;
  /** The script's arguments; null: the run's `args` when `path` is null, else none. */
  args?: string[] | null;
  nproc?: number | null;
}

export interface JobProgress {
  fraction?: number | null;
  message?: string | null;
}

/** The `deepdive/jobs/event` notification: something happened to a job. */
export interface JobEvent {
  jobId: string;
  type: 'started' | 'output' | 'progress' | 'data' | 'finished';
  /** Increases by one per event of a job: the client can tell if it missed one. */
  seq: number;
  /** With `started` and `finished`. */
  job?: JobInfo | null;
  /** With `output`: lines are batched so a chatty job cannot flood the editor. */
  lines?: OutputLine[] | null;
  /** With `output`: lines dropped because the job printed faster than the client reads. */
  droppedLines?: number | null;
  progress?: JobProgress | null;
  /** With `data`: a structured event the job emitted (its name is under `data['event']`). */
  data?: Record<string, unknown> | null;
}

/** The newest throughput figure of a training run that reports to the hub. */
export interface RunThroughput {
  runId: string;
  value: number;
  /** `samples/s`, or `steps/s` when the run does not report its batch size. */
  unit: string;
  jobId?: string | null;
  step?: number | null;
  /** What `value` is, with its window: `samples/s over the last 10 s, all ranks` (the engine's figure, the one the dashboard and the terminal show; deepdive.throughput). */
  label?: string | null;
}

/** The `deepdive/telemetry/summary` notification: what the status bar shows, about once a second. */
export interface TelemetrySummary {
  t: number;
  /** Mean GPU utilisation over the GPUs, percent; null when there is no GPU (see `gpu_reason`). */
  gpuUtil?: number | null;
  gpuCount?: number;
  /** Why there is no GPU reading ("no NVIDIA GPU: NVML library not found"). */
  gpuReason?: string | null;
  /** Fraction 0..1 of GPU memory in use, over all GPUs. */
  gpuMemoryUsed?: number | null;
  /** Host CPU utilisation, percent. */
  hostCpu?: number | null;
  /** Runs that reported in the last few seconds, newest first. */
  runs?: RunThroughput[];
}

/** A `$/progress` value on the request's partial-result token while a program is generated. */
export interface GeneratePartial {
  /** `text`: append `text`; `reset`: discard what came so far (a repair round starts over); `check`: a verification check finished; `phase`: a new stage started (`text` names it). */
  kind: 'text' | 'reset' | 'check' | 'phase';
  text?: string | null;
  check?: GenerateCheck | null;
}

/** `doctor-deep`: import torch in a subprocess and measure matmul throughput. */
export interface DeepCheckOptions {
  /** Time budget per measurement. */
  seconds?: number;
  /** The matrices' side. */
  size?: number;
  device?: Device;
}

/** `script`: run a Python file of the workspace (and the script of a train or tune job). */
export interface ScriptOptions {
  /** The script, relative to the workspace (or absolute, inside it). */
  path: string;
  /** The script's own arguments. */
  args?: string[];
}

/** `train`: a training script under torchrun (elastic). */
export interface TrainOptions {
  /** The script, relative to the workspace (or absolute, inside it). */
  path: string;
  /** The script's own arguments. */
  args?: string[];
  /** Processes per node. */
  nproc?: number;
  /** Nodes, or an elastic range; more than one needs `rdzv_endpoint`. */
  nnodes?: string;
  rdzv_endpoint?: string | null;
  /** Restarts of the worker group on failure (a preempted script checkpoints and resumes). */
  max_restarts?: number;
  /** The telemetry JSONL file the workers write. */
  metrics_out?: string | null;
  /** dd.setup's default checkpoint folder (relative to the workspace): a restart resumes from it. */
  checkpoint_dir?: string | null;
  /** Start from step 0: ignore the checkpoints saved before this job. */
  fresh?: boolean;
  /** Where the script's dd.setup() leaves precision 'auto'. */
  precision?: TrainPrecision | null;
  /** Where the script's dd.setup() leaves grad_compression 'auto'. */
  grad_compression?: GradCompression | null;
}

/** `tune`: Bayesian search (Optuna) over a script's run.suggest() declarations. */
export interface TuneOptions {
  /** The script, relative to the workspace (or absolute, inside it). */
  path: string;
  /** The script's own arguments. */
  args?: string[];
  /** Finished trials the study should hold. */
  trials?: number;
  parallel?: number;
  storage?: string | null;
  study?: string | null;
  sampler?: TuneSampler | null;
  pruner?: TunePruner | null;
  metric?: string | null;
  direction?: TuneDirection | null;
  value?: TuneValue | null;
  /** Reports without a new best that end a trial (default: 2 unless trials are scored by their last report; 0: off). */
  patience?: number | null;
  timeout?: number | null;
  trial_timeout?: number | null;
  seed?: number | null;
  retry_failed?: boolean;
  pack?: boolean;
  /** After the search, re-train the top K trials with fresh seeds; the best mean is the answer (0: off). */
  confirm?: number;
  /** Fresh training seeds per confirmed trial. */
  confirm_seeds?: number;
  /** Write the best parameters into the script's suggest() defaults when the study ends (with ``confirm``: the confirmed answer's). */
  apply?: boolean;
}

/** `compress`: prune, reduce depth, distil and/or quantize a trained model, measuring each step. */
export interface CompressOptions {
  /** A torch.save file (relative to the workspace, or absolute). */
  model: string;
  /** It defines evaluate(model), example_inputs(batch_size) and train_loader(). */
  eval: string;
  prune?: number | null;
  /** Depth reduction: the repeated blocks kept. */
  layers?: number | null;
  distill?: boolean;
  quantize?: QuantizeMode | null;
  target?: CompressTarget | null;
  importance?: PruneImportance | null;
  /** Progressive pruning: reach `prune` in this many steps. */
  steps?: number | null;
  /** Fine-tuning epochs after each pruning step. */
  epochs?: number | null;
  distillEpochs?: number | null;
  /** The folder for the compressed model and its report (default: the model's). */
  out?: string | null;
}

/** `diagnose`: a few steps of a training script under torch.profiler; the step-time breakdown and findings. */
export interface DiagnoseOptions {
  /** The script, relative to the workspace (or absolute, inside it). */
  path: string;
  /** The script's own arguments. */
  args?: string[];
  /** Optimizer steps measured. */
  steps?: number;
  /** Steps run before measuring (allocator, cuDNN autotuning, lazy init). */
  warmup?: number;
}

/** `diagnose-fix`: apply one rule's fix to a copy of the script and time both in alternating pairs. */
export interface DiagnoseFixOptions {
  /** The script, relative to the workspace (or absolute, inside it). */
  path: string;
  /** The script's own arguments. */
  args?: string[];
  code: string;
  /** The finding's line (1-based): which of the rule's findings to fix. */
  line?: number;
  /** Runs of each arm, alternating (6 pairs reach 96.9 % coverage for the median ratio). */
  pairs?: number;
  /** Optimizer steps timed per run. */
  steps?: number;
  warmup?: number;
}

/** `deploy-export`: a script's model (and optionally its trained file) written in its deployable forms. */
export interface DeployExportOptions {
  /** It defines build_model() and example_inputs(batch_size) or example_batch(). */
  path: string;
  /** The trained (or compressed) model file; none: build_model()'s initial weights. */
  model?: string | null;
  /** The export folder (default: deploy/<name> in the workspace). */
  out?: string | null;
  /** Of eager, torchscript, pt2, onnx, int8; empty: all. */
  forms?: string[];
}

/** `deploy-bench`: the exported forms measured on this machine, the fastest within tolerance chosen and saved. */
export interface DeployBenchOptions {
  folder: string;
  batch_sizes?: string | null;
  /** Candidates to measure; empty: all this machine and folder offer. */
  forms?: string[];
  tolerance?: number | null;
  /** Seconds of timed runs in all. */
  budget_s?: number | null;
}

/** `deploy-serve`: the exported model served on 127.0.0.1 (Open Inference Protocol v2) until cancelled. */
export interface DeployServeOptions {
  folder: string;
  /** Default: the one deploy bench chose, else eager. */
  form?: string | null;
  /** 0: a free port (the job's `deploy.serve` data event says which). */
  port?: number;
  instances?: number;
  max_batch?: number | null;
  max_queue_delay_us?: number | null;
  timeout_ms?: number | null;
  max_queue?: number | null;
  no_batching?: boolean;
  /** Milliseconds: choose max batch and queue delay so the predicted p99 latency fits. */
  target_p99?: number | null;
  /** With target_p99: the concurrent requests to plan for (queueing at that load is in the prediction). */
  clients?: number | null;
}

/** A producer's batch on /ingest (the engine's reporter sends one about every 0.2 s). */
export interface IngestBatch {
  type: 'samples';
  v?: number;
  run: string;
  rank: number;
  /** 0, 1, 2, ... per producer; a resent batch repeats its seq. */
  seq?: number | null;
  /** Samples the producer dropped since its previous batch. */
  dropped?: number;
  dropped_events?: number;
  /** Oldest first: `{kind, t, run, rank, ...fields}`. */
  events?: Record<string, unknown>[];
  /** Oldest first: `{t, run, rank, step, loss, ...}`. */
  samples?: Record<string, unknown>[];
}

/** The hub's answer to a malformed /ingest message (the connection stays open). */
export interface HubError {
  type: 'error';
  message: string;
}

/** The first message a subscriber gets: the recent history, oldest first. */
export interface StreamSnapshot {
  type: 'snapshot';
  t: number;
  /** Stream messages (samples, machine, verdict, ...) without their own `dropped`. */
  messages: Record<string, unknown>[];
  dropped?: number;
}

/** A producer's batch as the hub relays it to /stream subscribers. */
export interface StreamSamples {
  type: 'samples';
  run: string;
  rank: number;
  seq: number | null;
  /** When the hub received it; each sample and event keeps its own `t`. */
  t: number;
  samples: Record<string, unknown>[];
  events: Record<string, unknown>[];
  producer_dropped: number;
  producer_dropped_events: number;
  /** Entries this subscriber lost to its full queue since its previous message. */
  dropped?: number;
}

export interface NvlinkSample {
  links: number;
  tx_kib_s: number | null;
  rx_kib_s: number | null;
}

export interface EccErrors {
  volatile_corrected: number | null;
  volatile_uncorrected: number | null;
}

export interface GpuProcess {
  pid: number;
  used_mib: number | null;
}

/** One GPU in a machine sample (NVML); a field the device does not support is null. */
export interface GpuSample {
  index: number;
  name: string | null;
  uuid: string | null;
  util_gpu_pct: number | null;
  util_mem_pct: number | null;
  mem_used_mib: number | null;
  mem_total_mib: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  temp_c: number | null;
  clock_sm_mhz: number | null;
  clock_mem_mhz: number | null;
  throttle_reasons: string[] | null;
  pcie_tx_kib_s: number | null;
  pcie_rx_kib_s: number | null;
  nvlink: NvlinkSample | null;
  ecc_errors: EccErrors | null;
  /** XID codes since the previous sample. */
  xid_events: number[] | null;
  processes: GpuProcess[] | null;
}

/** The host in a machine sample; rates and cpu_pct are null on the sampler's first call. */
export interface HostSample {
  cpu_pct: number | null;
  per_cpu_pct: number[] | null;
  cpus: number | null;
  mem_used_mib: number | null;
  mem_total_mib: number | null;
  mem_pct: number | null;
  swap_used_mib: number | null;
  swap_total_mib: number | null;
  disk_read_b_s: number | null;
  disk_write_b_s: number | null;
  net_rx_b_s: number | null;
  net_tx_b_s: number | null;
  load_1m: number | null;
  load_5m: number | null;
  load_15m: number | null;
}

/** A job's process tree in a machine sample. */
export interface JobTreeSample {
  /** 100 = one core; null on the first sight of the tree. */
  cpu_pct: number | null;
  rss_mib: number;
  procs: number;
}

/** The machine sampler's reading, about once a second (``deepdive.telemetry.samplers``). */
export interface MachineMessage {
  type: 'machine';
  t: number;
  /** Null when NVML cannot be used; then `gpu_reason` says why. */
  gpus: GpuSample[] | null;
  gpu_reason: string | null;
  host: HostSample;
  /** By the root pid of each running job's process tree. */
  jobs: Record<string, JobTreeSample>;
  dropped?: number;
}

/** What limits a run now (``deepdive.telemetry.verdict``), published when it changes. */
export interface VerdictMessage {
  type: 'verdict';
  run: string;
  kind: string;
  sentence: string;
  fix: string;
  evidence: Record<string, unknown>;
  t: number;
  dropped?: number;
}

/** A run the metrics store holds (``MetricsStore.runs``). */
export interface PastRun {
  run: string;
  job: string | null;
  name: string | null;
  started: number;
  /** Null while the run goes on. */
  ended: number | null;
  outcome: string | null;
  dropped: number;
  kind: string;
  /** The script the engine ran (its setup event's path). */
  script: string | null;
}

/** The answer to a query (or to anything else a subscriber sends: `ok` false); carries the query's id. */
export interface HubReply {
  type: 'reply';
  id: number | null;
  ok: boolean;
  error?: string | null;
  runs?: PastRun[] | null;
  run?: string | null;
  /** The run's samples: `t` and the fields asked for. */
  rows?: Record<string, unknown>[] | null;
  /** Rows stored before thinning to at most the points a chart draws. */
  total_rows?: number | null;
}

/** A subscriber asks for stored history on its /stream connection. */
export interface HubQuery {
  type: 'query';
  id: number;
  /** `runs`: the past runs; `run`: one run's stored samples (rank 0). */
  what: 'runs' | 'run';
  run?: string | null;
  /** The sample fields a `run` query wants. */
  fields?: string[] | null;
}

/** The engine's dd.setup(): what the run is and where it runs. */
export interface SetupEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'setup';
  precision: string;
  precision_reason: string;
  world_size: number;
  backend: string | null;
  device: string;
  topology: string | null;
  link: string | null;
  /** The script's absolute path ('' for `python -c`). */
  script: string;
  argv: string[];
  pid: number;
  host: string;
  cwd: string;
}

/** A study starts (or resumes) in this process. */
export interface TuneStudyEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.study';
  study: string;
  direction: TuneDirection;
  metric: string;
  sampler: TuneSampler;
  pruner: TunePruner;
  n_trials: number;
  parallel: number;
  /** The storage URL, password redacted. */
  storage: string;
  /** Where the metric and direction came from (--metric, the study, the script). */
  metric_source: string | null;
  sampler_label: string;
  pruner_label: string;
  /** Reports without a new best that end a trial early (None: off). */
  patience?: number | null;
  /** Where the patience came from: "the default", "--patience 3", "off: --patience 0", ... */
  patience_source?: string | null;
  /** How a trial's value is taken from its reports: its last or its best. */
  value?: TuneValue | null;
  /** Complete trials before parameter importance is computed. */
  importance_after: number;
}

/** A trial's state: sent as it changes (a newer event of the same trial replaces the older). */
export interface TuneTrialEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.trial';
  study: string;
  number: number;
  state: TrialState;
  params: Record<string, unknown>;
  value: number | null;
  /** [step, value] pairs, oldest first (the last 200). */
  intermediate: number[][];
  reason: string | null;
  worker: number | null;
  waiting_reason: string | null;
  duration_s: number | null;
}

export interface TuneBestEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.best';
  study: string;
  number: number;
  value: number;
  params: Record<string, unknown>;
}

export interface TuneImportanceEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.importance';
  study: string;
  /** Empty until enough trials completed (see `note`). */
  importances: Record<string, number>;
  note: string | null;
}

/** One of the search's top trials, re-trained with fresh seeds (``--confirm K``). */
export interface ConfirmCandidate {
  /** The search's trial. */
  number: number;
  params: Record<string, unknown>;
  /** The trial's value in the search (trained with the study's seed). */
  search_value: number;
  /** One per fresh seed, in ``seeds`` order (None: that re-training failed or has not finished). */
  values: number[];
  /** The mean of the finished re-trainings (None before any). */
  mean: number | null;
  /** Their sample standard deviation (None with fewer than two). */
  std: number | null;
  /** [low, high]: the mean's 95 % confidence interval (Student's t; None with fewer than two). */
  ci95: number[] | null;
}

/** ``--confirm K``: the top K trials re-trained with fresh seeds; the best mean is the study's answer. */
export interface TuneConfirmation {
  k: number;
  /** The fresh training seeds (the search trained every trial with the study's seed). */
  seeds: number[];
  /** Best search value first. */
  candidates: ConfirmCandidate[];
  /** The trial with the best re-trained mean in the study's direction (None: no re-training finished). */
  chosen: number | null;
  /** Why, in one sentence (e.g. trial 12's mean 0.7836 over 3 seeds against the search's best, trial 7, 0.7791). */
  reason: string;
}

/** The study's process ended. */
export interface TuneDoneEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.done';
  study: string;
  n_complete: number;
  n_pruned: number;
  n_fail: number;
  best_value: number | null;
  best_params: Record<string, unknown>;
  seconds: number;
  /** [number, state, value] of the newest trials as the storage holds them at the end. */
  trials: unknown[][];
  /** The study's answer: the confirmed winner (``--confirm``), else the search's best trial. */
  chosen_number?: number | null;
  /** The answer's parameters (what *Apply best parameters* writes). */
  chosen_params?: Record<string, unknown>;
  /** The confirmation of the top trials (``--confirm K``), or None when there was none. */
  confirmed?: TuneConfirmation | null;
}

/** One re-training of ``--confirm`` finished (sent as each ends; ``tune.confirmed`` closes the phase). */
export interface TuneConfirmEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.confirm';
  study: string;
  /** The search's trial re-trained. */
  number: number;
  seed: number;
  state: 'complete' | 'fail';
  value: number | null;
  reason: string | null;
  /** Re-trainings finished so far (this confirmation). */
  done: number;
  total: number;
}

/** The confirmation ended: every candidate's re-trained values, the chosen trial and why (the fields of :class:`TuneConfirmation`). */
export interface TuneConfirmedEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'tune.confirmed';
  study: string;
  k: number;
  seeds: number[];
  candidates: ConfirmCandidate[];
  chosen: number | null;
  reason: string;
}

/** The step the pipeline is on and what it does there. */
export interface CompressProgressEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'compress.progress';
  /** original, prune, layers, distill, quantize or summary. */
  step: string;
  phase: string;
  /** Pruning: the fraction removed. */
  amount?: number | null;
  /** Distillation: the epoch just done, with its mean losses. */
  epoch?: number | null;
  loss?: number | null;
  kl?: number | null;
  ce?: number | null;
  feature?: number | null;
}

export interface LatencyFigures {
  p50: number;
  p95: number;
  runs: number;
}

/** A step's model was measured. */
export interface CompressStepEvent {
  t: number;
  run: string;
  rank: number;
  step: string;
  params: number;
  size_mb: number;
  /** By batch: `b1`, `b32`. */
  latency_ms: Record<string, LatencyFigures>;
  /** What the evaluation script's evaluate() returned. */
  accuracy: number;
  seconds: number;
  detail: Record<string, unknown>;
  kind: 'compress.step';
}

/** A measured model: the original, or the model after a step. */
export interface CompressStepRow {
  step: string;
  params: number;
  size_mb: number;
  /** By batch: `b1`, `b32`. */
  latency_ms: Record<string, LatencyFigures>;
  /** What the evaluation script's evaluate() returned. */
  accuracy: number;
  seconds: number;
  detail: Record<string, unknown>;
}

export interface CompressSummary {
  size_ratio: number | null;
  params_ratio: number | null;
  accuracy_drop_points: number;
  speedup_b1?: number | null;
  speedup_b32?: number | null;
  /** The original and the final model timed in alternating rounds, by batch. */
  latency_paired_ms?: Record<string, unknown>;
}

export interface CompressOutputs {
  model: string;
  json: string;
  markdown: string;
  format: string;
}

/** The pipeline's report (also written as STEM.compress.json): its rows replace the live ones. */
export interface CompressReportEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'compress.report';
  model: string;
  eval: string;
  target: string;
  threads: number;
  steps: CompressStepRow[];
  summary: CompressSummary;
  outputs: CompressOutputs;
  config: Record<string, unknown>;
}

/** Milliseconds per step (median over the measured steps) spent in each part; ``idle`` is the rest of the step (Python between ops, waiting on nothing measured). */
export interface StepBreakdown {
  data_wait: number;
  forward: number;
  backward: number;
  optimizer: number;
  host_sync: number;
  copies: number;
  communication: number;
  idle: number;
}

/** A finding of the report: a static rule's (promoted when measured) or a measured hot line without a rule. */
export interface DiagnosisFinding {
  /** ``DD110``, or ``DD900`` for a measured hot line no rule explains. */
  code: string;
  /** Absolute path. */
  file: string;
  /** 1-based. */
  line: number;
  message: string;
  /** The breakdown part its measured time belongs to; null: not measured. */
  part: 'data_wait' | 'forward' | 'backward' | 'optimizer' | 'host_sync' | 'copies' | 'communication' | 'idle' | null;
  /** Its measured share of the step time, 0..1; null: no evidence (a hint, not promoted). */
  share: number | null;
  ms_per_step: number | null;
  /** What was measured, in words (``aten::item ×640 per step``). */
  evidence: string | null;
  /** A static finding with measured evidence above the floor. */
  promoted: boolean;
  fixable: boolean;
}

/** A line of the user's code and the time measured under it per step (self time of the ops it called). */
export interface Hotspot {
  file: string;
  line: number;
  ms_per_step: number;
  share: number;
  part: 'data_wait' | 'forward' | 'backward' | 'optimizer' | 'host_sync' | 'copies' | 'communication' | 'idle';
  /** The ops, in a few words (``aten::addmm ×3``). */
  what: string;
}

export interface DiagnosisReport {
  /** Absolute path of the script measured. */
  script: string;
  args: string[];
  /** ``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``. */
  device: string;
  /** What measured it (``torch.profiler, CPU activities, stacks and shapes``). */
  profiler: string;
  warmup: number;
  /** Steps measured (after ``warmup`` steps that were not). */
  steps: number;
  /** Median step time. */
  step_ms: number;
  /** The fastest and slowest measured step. */
  step_ms_spread: number[];
  breakdown: StepBreakdown;
  findings: DiagnosisFinding[];
  hotspots: Hotspot[];
  /** The script uses deepdive.engine (its telemetry streamed to the hub during the run). */
  engine: boolean;
  /** The whole diagnosis, start to report. */
  wall_s: number;
  /** Seconds since the epoch. */
  created: number;
  /** Something the reader must know (the script ended before the steps asked for, no optimizer step seen…). */
  note?: string | null;
}

/** `deepdive diagnose`'s measured report (run ``diagnose-<script stem>``), also written as a JSON file. */
export interface DiagnoseReportEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'diagnose.report';
  report: DiagnosisReport;
}

/** *Apply and measure*: the script and its fixed copy, timed in alternating pairs. */
export interface SpeedupResult {
  script: string;
  /** The rule whose fix was applied. */
  code: string;
  line: number;
  /** The fix's title. */
  title: string;
  pairs: number;
  /** Steps timed per run (after warm-up). */
  steps: number;
  /** The script as it is: the median over its runs of each run's mean step time (its measured window over its steps, so a cost paid once an epoch counts). */
  baseline_ms: number;
  fixed_ms: number;
  /** Median of the paired ratios baseline/fixed (>1: the fix is faster). */
  speedup: number;
  ci_low: number;
  ci_high: number;
  /** The confidence level of [ci_low, ci_high] (distribution-free, from the paired ratios' order statistics). */
  confidence: number;
  verdict: 'faster' | 'slower' | 'no measurable change';
  wall_s: number;
  created: number;
}

/** *Apply and measure*: a fix's measured speed-up (run ``diagnose-<script stem>``). */
export interface DiagnoseSpeedupEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'diagnose.speedup';
  result: SpeedupResult;
}

/** Milliseconds at the 50th and 99th percentile of the recent window; null: nothing measured in it. */
export interface ServeQuantiles {
  p50: number | null;
  p99: number | null;
}

/** The batcher's settings (``deepdive.deploy.batcher.BatchConfig``). */
export interface ServeBatching {
  /** False: every request runs alone. */
  batching: boolean;
  max_batch_size: number;
  preferred_batch_sizes: number[];
  max_queue_delay_us: number;
  timeout_ms: number;
  max_queue: number;
}

/** The batcher's recent window (``window_s``) and its state now. */
export interface ServeStats {
  window_s: number;
  /** Requests that ended in the window, whatever their outcome. */
  requests: number;
  /** Requests answered ``ok`` per second over the window (the part of it since the first request). */
  requests_per_s: number;
  /** In the window, by outcome: ok, error, timeout, queue_full, unavailable. */
  outcomes: Record<string, number>;
  batches: number;
  /** Batches run in the window by their rows (keys are the row counts as strings). */
  batch_size_histogram: Record<string, number>;
  mean_batch_size: number | null;
  /** Time from arrival until a model instance took the request (answered requests). */
  queue_delay_ms: ServeQuantiles;
  /** Time from arrival until the answer (answered requests). */
  latency_ms: ServeQuantiles;
  /** The model's run time per batch. */
  run_ms: ServeQuantiles;
  /** Since the server started, by outcome. */
  totals: Record<string, number>;
  queue_depth: number;
  running_batches: number;
  instances: number;
  config: ServeBatching;
}

/** A running ``deepdive deploy serve``'s batcher, about every second while it serves requests (run ``serve-<model name>``; every 15 s while idle). */
export interface ServeStatsEvent {
  t: number;
  run: string;
  rank: number;
  kind: 'serve.stats';
  model: string;
  /** The runtime it serves: eager, compiled, torchscript, pt2, onnx, int8. */
  form: string;
  /** The server's base URL (``http://127.0.0.1:8000``). */
  url: string;
  /** The seconds ``rate_per_s`` covers: since the server's figures were last looked at (about 1 s; 0 for the first event). */
  interval_s: number;
  /** Requests answered ``ok`` per second over ``interval_s``: the requests/s chart's point. */
  rate_per_s: number;
  stats: ServeStats;
}

/** Custom requests: method name, params and result types. */
export const Requests = {
  /** The daemon's version and identity. */
  version: 'deepdive/version',
  /** Environment report: Python, torch, GPUs, packages. */
  doctor: 'deepdive/doctor',
  /** Start a job of a known kind. */
  jobsStart: 'deepdive/jobs/start',
  /** Jobs, newest first, past ones too. */
  jobsList: 'deepdive/jobs/list',
  /** Cancel a job: its whole process group is killed. */
  jobsCancel: 'deepdive/jobs/cancel',
  /** The stored output of a job. */
  jobsLog: 'deepdive/jobs/log',
  /** The kinds of job the daemon can start. */
  jobsKinds: 'deepdive/jobs/kinds',
  /** Where the telemetry hub listens, with its token. */
  hub: 'deepdive/hub',
  /** Write a program from a sentence and verify it; partial results stream as GeneratePartial. */
  generate: 'deepdive/generate',
  /** The edits that set a script's suggest() defaults to the given (best) parameters. */
  tuneApplybest: 'deepdive/tune/applyBest',
  /** The local code models: registered ones with their measured speed, and found ones not added yet. */
  modelsList: 'deepdive/models/list',
  /** Choose the code model `auto` uses (adding a found one first); null: the builtin generator. */
  modelsSetdefault: 'deepdive/models/setDefault',
  /** The checkpoint stores of the workspace: each run's checkpoints with sizes, dedup ratio and verified status. */
  checkpointsList: 'deepdive/checkpoints/list',
  /** Verify a store's checkpoints (`deepdive ckpt verify`, in a subprocess); the result is remembered for list. */
  checkpointsVerify: 'deepdive/checkpoints/verify',
  /** Write a checkpoint's tensors as a plain state_dict file (`deepdive ckpt export`, in a subprocess). */
  checkpointsExport: 'deepdive/checkpoints/export',
  /** Start a train job on the store: it resumes from the newest checkpoint that loads. */
  checkpointsResume: 'deepdive/checkpoints/resume',
} as const;

export interface RequestTypes {
  'deepdive/version': { params: Record<string, never>; result: VersionResult };
  'deepdive/doctor': { params: DoctorParams; result: DoctorReport };
  'deepdive/jobs/start': { params: JobStartParams; result: JobInfo };
  'deepdive/jobs/list': { params: JobListParams; result: JobList };
  'deepdive/jobs/cancel': { params: JobIdParams; result: JobInfo };
  'deepdive/jobs/log': { params: JobIdParams; result: JobLog };
  'deepdive/jobs/kinds': { params: Record<string, never>; result: JobKindList };
  'deepdive/hub': { params: Record<string, never>; result: HubInfo };
  'deepdive/generate': { params: GenerateParams; result: GenerateResult };
  'deepdive/tune/applyBest': { params: TuneApplyParams; result: TuneApplyResult };
  'deepdive/models/list': { params: ModelListParams; result: ModelList };
  'deepdive/models/setDefault': { params: ModelSetDefaultParams; result: ModelList };
  'deepdive/checkpoints/list': { params: CheckpointListParams; result: CheckpointList };
  'deepdive/checkpoints/verify': { params: CheckpointVerifyParams; result: CheckpointVerifyResult };
  'deepdive/checkpoints/export': { params: CheckpointExportParams; result: CheckpointExportResult };
  'deepdive/checkpoints/resume': { params: CheckpointResumeParams; result: JobInfo };
}

/** Custom notifications from the daemon. */
export const Notifications = {
  /** Something happened to a job. */
  jobsEvent: 'deepdive/jobs/event',
  /** GPU utilisation and run throughput for the status bar. */
  telemetrySummary: 'deepdive/telemetry/summary',
} as const;

export interface NotificationTypes {
  'deepdive/jobs/event': JobEvent;
  'deepdive/telemetry/summary': TelemetrySummary;
}

/** The options of each job kind (`deepdive/jobs/start`; the daemon checks them). */
export interface JobOptionTypes {
  'doctor-deep': DeepCheckOptions;
  'script': ScriptOptions;
  'train': TrainOptions;
  'tune': TuneOptions;
  'compress': CompressOptions;
  'diagnose': DiagnoseOptions;
  'diagnose-fix': DiagnoseFixOptions;
  'deploy-export': DeployExportOptions;
  'deploy-bench': DeployBenchOptions;
  'deploy-serve': DeployServeOptions;
}

export type JobOptions = JobOptionTypes[keyof JobOptionTypes];

/** `deepdive/jobs/start`'s params for a job of kind K, its options typed. */
export type JobStartOf<K extends keyof JobOptionTypes> = Omit<JobStartParams, 'kind' | 'options'> & { kind: K; options: JobOptionTypes[K] };

/** The numbers each option takes: [low, high] (both included unless the option's doc says otherwise). */
export const JobOptionRanges = {
  'doctor-deep': { seconds: [0.1, 120], size: [32, 16384] },
  'train': { nproc: [1, 1024], max_restarts: [0, 1000] },
  'tune': { trials: [1, 100000], parallel: [1, 1024], patience: [0, 100000], timeout: [0.001, 1e+09], trial_timeout: [0.001, 1e+09], seed: [0, 4.29497e+09], confirm: [0, 100], confirm_seeds: [2, 100] },
  'compress': { prune: [0, 1], layers: [1, 1000], steps: [1, 100], epochs: [0, 1000], distillEpochs: [1, 1000] },
  'diagnose': { steps: [1, 1000], warmup: [0, 1000] },
  'diagnose-fix': { line: [1, 1e+07], pairs: [2, 100], steps: [1, 1000], warmup: [0, 1000] },
  'deploy-bench': { tolerance: [0, 1e+06], budget_s: [0.1, 3600] },
  'deploy-serve': { port: [0, 65535], instances: [1, 256], max_batch: [1, 65536], max_queue_delay_us: [0, 6e+07], timeout_ms: [0.001, 3.6e+06], max_queue: [1, 1e+06], target_p99: [0.001, 3.6e+06], clients: [1, 1e+06] },
} as const;

/** What a producer sends to the hub's /ingest. */
export type IngestMessage = IngestBatch;

/** What the hub answers on /ingest. */
export type IngestReply = HubError;

/** What the hub sends a dashboard on /stream. */
export type StreamMessage = StreamSnapshot | StreamSamples | MachineMessage | VerdictMessage | HubReply;

/** What a dashboard may send on /stream. */
export type StreamQuery = HubQuery;

/** The events of a samples message that the pages read (by `kind`). */
export type HubEvent = SetupEvent | TuneStudyEvent | TuneTrialEvent | TuneBestEvent | TuneImportanceEvent | TuneDoneEvent | TuneConfirmEvent | TuneConfirmedEvent | CompressProgressEvent | CompressStepEvent | CompressReportEvent | DiagnoseReportEvent | DiagnoseSpeedupEvent | ServeStatsEvent;

/** A message as it arrives: the protocol's keys, each value still to be checked. */
export type Unchecked<T> = { [K in keyof T]?: unknown };
