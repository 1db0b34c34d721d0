export {
  trueClock,
  createSimClock,
  createManualClock,
  createSeededRandom,
  isRatedClock,
  isSimClock,
  type RatedClock,
  type SimClock,
  type SimClockOptions,
  type ManualClock,
} from './sim-clock.js';
export {
  createVirtualDac,
  createTicker,
  createFramePacer,
  type VirtualDac,
  type VirtualDacOptions,
  type VirtualDacStats,
  type DacRecording,
  type RecordOptions,
  type SoundEdge,
  type UnderrunEvent,
  type BlockEvent,
  type Ticker,
  type FramePacer,
} from './virtual-dac.js';
export { encodeWav, decodeWav, writeWav, readWav, encodeS16le, floatToS16, WavFormatError, type WavData } from './wav.js';
export {
  createSimHardware,
  HardwareError,
  INJECTABLE_FAULTS,
  VN_OPERATORS,
  type SimHardware,
  type SimHardwareOptions,
  type InjectableFault,
  type FaultInjection,
  type SimLineOptions,
  type ThermalOptions,
  type BatteryOptions,
} from './sim-hardware.js';
export {
  createUdpProxy,
  createTcpProxy,
  NO_IMPAIRMENT,
  type Impairment,
  type ImpairmentProxy,
  type TcpProxy,
  type ProxyOptions,
  type UdpProxyOptions,
  type ProxyStats,
  type DirectionStats,
} from './impairment-proxy.js';
export { createPcmPipeSink, type PcmPipeSink, type PcmPipeSinkOptions, type PcmPipeSinkStats } from './pcm-pipe-sink.js';
