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

/// One Jetstream event: its JSON bytes (byte-identical to Jetstream v1) and the metadata later
/// stages store, filter and resume by.
public struct Event: Sendable {
  /// The server-unique, strictly increasing cursor (PROTOCOL §3.4).
  public let timeUS: Int64
  /// The relay `seq` of the frame the event came from.
  public let seq: Int64
  public let kind: EventKind
  public let did: String
  /// The commit's collection; empty for identity and account events.
  public let collection: String
  /// The complete event JSON, no trailing newline.
  public let json: [UInt8]

  public init(
    timeUS: Int64, seq: Int64, kind: EventKind, did: String, collection: String, json: [UInt8]
  ) {
    self.timeUS = timeUS
    self.seq = seq
    self.kind = kind
    self.did = did
    self.collection = collection
    self.json = json
  }
}
