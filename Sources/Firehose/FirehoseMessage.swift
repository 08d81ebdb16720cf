/// The kinds of relay frame, as counted by `contrail_relay_frames_total{type}` (PROTOCOL §5.2).
/// `oversize` frames were longer than the frame-size limit and dropped before decoding.
public enum FrameType: Int, CaseIterable, Sendable {
  case commit, identity, account, sync, info, legacy, unknown, error, undecodable, oversize

  public var label: String {
    switch self {
    case .commit: "commit"
    case .identity: "identity"
    case .account: "account"
    case .sync: "sync"
    case .info: "info"
    case .legacy: "legacy"
    case .unknown: "unknown"
    case .error: "error"
    case .undecodable: "undecodable"
    case .oversize: "oversize"
    }
  }
}

/// One operation of a `#commit`. Byte ranges point into the frame.
public struct CommitOp {
  public var action: UnsafeRawBufferPointer
  public var path: UnsafeRawBufferPointer
  /// The binary CID, or nil when missing or null.
  public var cid: UnsafeRawBufferPointer?
}

/// The `#commit` body fields the translator uses (PROTOCOL §5.3).
public struct CommitMessage {
  public var seq: Int64
  public var repo: UnsafeRawBufferPointer
  public var rev: UnsafeRawBufferPointer
  /// Nil when absent or not a string (then the commit is dropped as `bad_time`).
  public var time: UnsafeRawBufferPointer?
  public var tooBig: Bool
  /// The CAR; nil when absent (then the commit is dropped as `bad_car`).
  public var blocks: UnsafeRawBufferPointer?
  public var ops: CommitOps
}

/// The ops of a commit, decoded lazily from the frame (they were validated when the frame was
/// decoded), so that reading a commit allocates nothing. The first op (most commits have one)
/// is kept from that validation rather than decoded again.
public struct CommitOps: Sequence {
  let encoded: UnsafeRawBufferPointer  // the items of the CBOR array, without its header
  public let count: Int
  /// The first op, and where the second starts in `encoded`.
  let first: CommitOp?
  let firstLength: Int

  init(encoded: UnsafeRawBufferPointer, count: Int, first: CommitOp?, firstLength: Int) {
    self.encoded = encoded
    self.count = count
    self.first = first
    self.firstLength = firstLength
  }

  static var none: CommitOps {
    CommitOps(
      encoded: UnsafeRawBufferPointer(start: nil, count: 0), count: 0, first: nil, firstLength: 0)
  }

  public func makeIterator() -> Iterator {
    Iterator(reader: CBORReader(encoded), remaining: count, first: first, firstLength: firstLength)
  }

  public struct Iterator: IteratorProtocol {
    var reader: CBORReader
    var remaining: Int
    var first: CommitOp?
    let firstLength: Int

    public mutating func next() -> CommitOp? {
      guard remaining > 0 else { return nil }
      remaining -= 1
      if let op = first {
        first = nil
        reader.offset = firstLength
        return op
      }
      return FrameDecoder.decodeOp(&reader)
    }
  }
}

/// An `#identity`, `#account` or `#sync` body: an account-level event, passed on with its own
/// fields (PROTOCOL §5.4). All three share `seq`, `did` and `time`; the rest belong to one kind.
public struct AccountEventMessage {
  public enum Kind: Sendable {
    case identity, account, sync

    public var frameType: FrameType {
      switch self {
      case .identity: .identity
      case .account: .account
      case .sync: .sync
      }
    }
  }

  /// The lexicon's `maxLength` of a `#sync`'s `blocks` (`com.atproto.sync.subscribeRepos#sync`).
  public static let maxSyncBlocksBytes = 10_000

  public var kind: Kind
  public var seq: Int64
  public var did: UnsafeRawBufferPointer
  public var time: UnsafeRawBufferPointer?
  /// `#identity`: the handle, when the relay sends one.
  public var handle: UnsafeRawBufferPointer? = nil
  /// `#account`: whether the account is active, and why not.
  public var active = false
  public var status: UnsafeRawBufferPointer? = nil
  /// `#sync`: the commit's rev and the CAR holding the commit block (both required there; empty
  /// for the other kinds). The CAR is passed on as bytes, not read.
  public var rev = UnsafeRawBufferPointer(start: nil, count: 0)
  public var blocks = UnsafeRawBufferPointer(start: nil, count: 0)
}

/// A decoded relay frame. Byte ranges point into the frame, which must outlive the message.
public enum FirehoseMessage {
  case commit(CommitMessage)
  /// `#identity`, `#account` or `#sync`.
  case accountEvent(AccountEventMessage)
  /// An `op = -1` frame, e.g. `FutureCursor` or `ConsumerTooSlow`.
  case error(code: String, message: String?)
  /// `#info`, e.g. `OutdatedCursor`.
  case info(name: String, message: String?)
  /// A frame that produces nothing: legacy types, unknown types or ops.
  case ignored(FrameType)
  case undecodable

  public var type: FrameType {
    switch self {
    case .commit: .commit
    case .accountEvent(let event): event.kind.frameType
    case .error: .error
    case .info: .info
    case .ignored(let type): type
    case .undecodable: .undecodable
    }
  }
}
