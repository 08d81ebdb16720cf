import CoreMetrics
import Events
import Firehose
import LabelledMetrics

/// Ingest's metrics (PROTOCOL §10.3 plus freshness): updated once per processed batch from the
/// translator's counters, never per event.
final class IngestMetrics: Sendable {
  private let frames: [Counter]  // by FrameType
  private let events: [Counter]  // by EventKind
  let reconnects: Counter
  let bytesIn: Counter
  let duplicateFrames: Counter
  let seqEpochs: Counter
  let seqJumps: Counter
  let appendErrors: Counter
  let upstreamSeq: Gauge
  let lastFrameTime: Gauge
  let connected: Gauge
  private let labelled: LabelledCounters

  init(factory: any MetricsFactory) {
    labelled = LabelledCounters(factory: factory)
    frames = FrameType.allCases.map {
      Counter(
        label: "contrail_relay_frames_total", dimensions: [("type", $0.label)], factory: factory)
    }
    events = EventKind.allCases.map {
      Counter(label: "contrail_events_total", dimensions: [("kind", $0.label)], factory: factory)
    }
    reconnects = Counter(label: "contrail_relay_reconnects_total", factory: factory)
    bytesIn = Counter(label: "contrail_relay_bytes_total", factory: factory)
    duplicateFrames = Counter(label: "contrail_relay_duplicate_frames_total", factory: factory)
    seqEpochs = Counter(label: "contrail_relay_seq_epochs_total", factory: factory)
    seqJumps = Counter(label: "contrail_relay_seq_jumps_total", factory: factory)
    appendErrors = Counter(label: "contrail_log_append_errors_total", factory: factory)
    upstreamSeq = Gauge(label: "contrail_relay_seq", factory: factory)
    lastFrameTime = Gauge(label: "contrail_relay_last_frame_time_seconds", factory: factory)
    connected = Gauge(label: "contrail_relay_connected", factory: factory)
  }

  /// Adds what the translator counted since `previous`.
  func record(_ counters: TranslateCounters, since previous: TranslateCounters) {
    for type in FrameType.allCases {
      let delta = counters.frames(type) - previous.frames(type)
      if delta > 0 { frames[type.rawValue].increment(by: delta) }
    }
    for (key, count) in counters.drops {
      let delta = count - (previous.drops[key] ?? 0)
      if delta > 0 {
        labelled.counter(
          "contrail_translate_dropped_total",
          [("scope", key.scope.rawValue), ("reason", key.reason.rawValue)]
        ).increment(by: delta)
      }
    }
  }

  /// `contrail_events_total{kind}`: events stored (and published), counted after the log took
  /// them, so frames dropped as duplicates or absurd seq jumps never count.
  func stored(_ stored: ArraySlice<Event>) {
    var byKind = [0, 0, 0]
    for event in stored { byKind[Int(event.kind.rawValue)] += 1 }
    for (kind, count) in byKind.enumerated() where count > 0 { events[kind].increment(by: count) }
  }

  /// `contrail_relay_error_frames_total{code}`.
  func errorFrame(_ code: String) {
    labelled.counter("contrail_relay_error_frames_total", [("code", code)]).increment()
  }
}
