/// The Jetstream event kinds (PROTOCOL §3.1). `sync` events are stored and sent on the v2 wire
/// only: v1 subscribers never see them.
public enum EventKind: UInt8, Sendable, CaseIterable {
  case commit, identity, account, sync

  public var label: String {
    switch self {
    case .commit: "commit"
    case .identity: "identity"
    case .account: "account"
    case .sync: "sync"
    }
  }
}

/// What every stage knows about an event besides its bytes: where it is in the stream and
/// what filters look at. `Event`, the log's `LogRecord` and the ring's `BroadcastEvent` each hold
/// one, so the fields are declared once.
public struct EventMeta: Sendable, Equatable {
  /// The server-unique, strictly increasing cursor (PROTOCOL §3.4).
  public var timeUS: Int64
  /// The relay `seq` of the frame the event came from.
  public var seq: Int64
  /// The event's v2 sequence number (PROTOCOL §12.3): assigned by the store path, 1-based and
  /// strictly increasing through the log (docs/FORMAT.md §3); 0 before it is stored.
  public var eventSeq: Int64
  public var kind: EventKind
  public var did: String
  /// The commit's collection; empty for the other kinds.
  public var collection: String

  public init(
    timeUS: Int64, seq: Int64, eventSeq: Int64 = 0, kind: EventKind, did: String,
    collection: String
  ) {
    self.timeUS = timeUS
    self.seq = seq
    self.eventSeq = eventSeq
    self.kind = kind
    self.did = did
    self.collection = collection
  }
}

/// One Jetstream event: its JSON bytes (byte-identical to Jetstream v1) and its metadata, which
/// later stages store, filter and resume by.
public struct Event: Sendable {
  public let meta: EventMeta
  /// The complete event JSON, no trailing newline.
  public let json: [UInt8]

  public init(
    timeUS: Int64, seq: Int64, kind: EventKind, did: String, collection: String, json: [UInt8]
  ) {
    meta = EventMeta(timeUS: timeUS, seq: seq, kind: kind, did: did, collection: collection)
    self.json = json
  }

  public var timeUS: Int64 { meta.timeUS }
  public var seq: Int64 { meta.seq }
  public var kind: EventKind { meta.kind }
  public var did: String { meta.did }
  public var collection: String { meta.collection }
}
