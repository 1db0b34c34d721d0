export { createZoneStreams, StreamRefused, STREAM_CONTENT_TYPE, STREAM_FORMATS, type StreamFormat, type ZoneStreams, type ZoneStreamsDeps, type ZoneStreamOptions, type ZoneStreamStatus } from './zone-stream.js';
export { createZoneMixer, STREAM_SAMPLE_RATE, type ZoneMixer, type ZoneMixerDeps, type ZoneMixerOptions, type OnAir, type MixerLiveSession } from './zone-mixer.js';
export { createOggPageSplitter, createMp3FrameSplitter, mp3FrameLength, type OggUnit } from './framing.js';
export { createListenKeys, type ListenKeys, type ListenKeysDeps, type ListenKeyView } from './listen-keys.js';
