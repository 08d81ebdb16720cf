/// The `# HELP` text of every metric `serve` exports (swift-metrics carries none): added to the
/// Prometheus exposition in front of each family's `# TYPE` line.
enum MetricHelp {
  static let text: [String: String] = [
    "contrail_bytes_saved_total":
      "Bytes zstd saved subscribers: the JSON length of the events sent compressed, minus their compressed length.",
    "contrail_bytes_sent_total":
      "Event payload bytes written to subscribers (websocket framing aside).",
    "contrail_events_filtered_total": "Events a subscriber's filter skipped.",
    "contrail_events_oversize_total":
      "Events not sent because they exceed the subscriber's maxMessageSizeBytes.",
    "contrail_events_sent_total": "Events written to subscribers.",
    "contrail_events_total": "Events stored (and published), by kind.",
    "contrail_heartbeats_sent_total": "Cursor heartbeats sent to subscribers.",
    "contrail_http_timeouts_total":
      "HTTP connections closed for not completing a request (header or idle timeout).",
    "contrail_ingest_filtered_total":
      "Events the ingest filter (--collections, --dids) kept out of the log.",
    "contrail_log_append_errors_total": "Appends to the event log that failed (e.g. a full disk).",
    "contrail_log_bytes": "Size of the event log on disk.",
    "contrail_log_events": "Events held in the event log.",
    "contrail_log_oldest_event_time_seconds": "Time of the oldest event in the log (Unix seconds).",
    "contrail_log_segments": "Segment files in the event log.",
    "contrail_options_updates_total": "options_update messages from subscribers, by outcome.",
    "contrail_relay_bytes_total": "Bytes of relay frames received.",
    "contrail_relay_connected": "1 while connected to the relay (or upstream).",
    "contrail_relay_duplicate_frames_total":
      "Relay frames dropped because their seq was already stored (resume overlap).",
    "contrail_relay_error_frames_total": "Error frames from the relay, by error code.",
    "contrail_relay_frames_total":
      "Relay frames received, by type (undecodable and oversize frames are dropped).",
    "contrail_relay_last_frame_time_seconds":
      "When the last relay frame was stored, or filtered out by the ingest filter (Unix seconds).",
    "contrail_relay_reconnects_total": "Reconnections to the relay.",
    "contrail_relay_seq":
      "The relay seq of the last frame stored (or filtered out by the ingest filter): where ingest resumes.",
    "contrail_relay_seq_epochs_total":
      "Times the relay's seq went backwards (or jumped) and a new epoch began.",
    "contrail_relay_seq_jumps_total":
      "Relay frames dropped because their seq jumped absurdly far ahead (or past what the log stores).",
    "contrail_subscribe_refused_total": "Subscriptions refused by a limit (429/503), by reason.",
    "contrail_subscribe_rejected_total": "Subscribe requests rejected with 400, by reason.",
    "contrail_subscriber_closes_total":
      "Subscriber connections the server closed, by reason (clients leaving are not counted).",
    "contrail_subscriber_reads_total": "Events read for subscribers, by source (memory or disk).",
    "contrail_subscribers": "Open subscriptions, by compression.",
    "contrail_subscribers_wire": "Open subscriptions, by wire (v1 /subscribe, v2 subscribeEvents).",
    "contrail_subscribers_replaying":
      "Subscriptions reading from the on-disk log (behind the in-memory window).",
    "contrail_subscriptions_total": "Subscriptions started, by start (live or cursor).",
    "contrail_translate_dropped_total":
      "Commits, ops or events the translator dropped, by scope and reason.",
    "contrail_upstream_frames_total":
      "On an edge: messages from its primary or Jetstream host, by what was done with them.",
  ]

  /// The exposition with a `# HELP` line before every `# TYPE` line that has a text.
  static func annotate(_ exposition: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(exposition.count + 4096)
    for line in exposition.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
      if line.starts(with: "# TYPE ".utf8) {
        let name = String(
          decoding: line.dropFirst(7).prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self)
        if let help = text[name] { out += Array("# HELP \(name) \(help)\n".utf8) }
      }
      out += line
      out.append(UInt8(ascii: "\n"))
    }
    out.removeLast()  // the newline added after the last piece, which the input did not have
    return out
  }
}
