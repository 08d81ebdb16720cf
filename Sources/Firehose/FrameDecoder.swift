/// Decodes a relay frame: a DAG-CBOR header `{op, t}` followed by a DAG-CBOR body
/// (`com.atproto.sync.subscribeRepos`). Pure; reads only the fields Contrail uses.
public enum FrameDecoder {
  public static func decode(_ frame: UnsafeRawBufferPointer) -> FirehoseMessage {
    var reader = CBORReader(frame)
    guard case .map(let headerCount) = reader.next() else { return .undecodable }
    var op: Int64? = nil
    var type: UnsafeRawBufferPointer? = nil
    for _ in 0..<headerCount {
      guard case .text(let key) = reader.next() else { return .undecodable }
      if key.matches("op") {
        switch reader.next() {
        case .unsigned(let v) where v <= 1 << 32: op = Int64(v)
        case .negative(let n) where n <= 1 << 32: op = -1 - Int64(n)
        default: return .undecodable
        }
      } else if key.matches("t") {
        guard case .text(let t) = reader.next() else { return .undecodable }
        type = t
      } else {
        guard reader.skipValue() else { return .undecodable }
      }
    }
    guard let op else { return .undecodable }
    let body = UnsafeRawBufferPointer(rebasing: frame[reader.offset...])
    if op == -1 { return decodeError(body) }
    guard op == 1, let type else { return .ignored(.unknown) }
    if type.matches("#commit") { return decodeCommit(body) }
    if type.matches("#identity") { return decodeAccountEvent(body, .identity) }
    if type.matches("#account") { return decodeAccountEvent(body, .account) }
    if type.matches("#info") { return decodeInfo(body) }
    if type.matches("#sync") { return decodeAccountEvent(body, .sync) }
    if type.matches("#handle") || type.matches("#tombstone") || type.matches("#migrate") {
      return .ignored(.legacy)
    }
    return .ignored(.unknown)
  }

  /// Visits each key of the map at the reader; `visit` reads the value or returns false to
  /// have it skipped. Returns false on malformed input, including trailing bytes.
  private static func forEachField(
    _ body: UnsafeRawBufferPointer,
    _ visit: (UnsafeRawBufferPointer, inout CBORReader) -> Bool?
  ) -> Bool {
    var reader = CBORReader(body)
    guard case .map(let count) = reader.next() else { return false }
    for _ in 0..<count {
      guard case .text(let key) = reader.next() else { return false }
      switch visit(key, &reader) {
      case .some(true): continue
      case .some(false): return false
      case .none: guard reader.skipValue() else { return false }
      }
    }
    return reader.isAtEnd
  }

  private static func readSeq(_ reader: inout CBORReader) -> Int64? {
    guard case .unsigned(let v) = reader.next(), v <= UInt64(Int64.max) else { return nil }
    return Int64(v)
  }

  /// Reads a text value, or nil for `null`; the outer optional is nil on any other token.
  private static func readOptionalText(_ reader: inout CBORReader) -> UnsafeRawBufferPointer?? {
    switch reader.next() {
    case .text(let t): return .some(t)
    case .null: return .some(nil)
    default: return nil
    }
  }

  private static func decodeCommit(_ body: UnsafeRawBufferPointer) -> FirehoseMessage {
    var seq: Int64? = nil
    var repo: UnsafeRawBufferPointer? = nil
    var rev: UnsafeRawBufferPointer? = nil
    var time: UnsafeRawBufferPointer? = nil
    var tooBig = false
    var blocks: UnsafeRawBufferPointer? = nil
    var ops = CommitOps.none
    let ok = forEachField(body) { key, reader in
      if key.matches("seq") {
        seq = readSeq(&reader)
        return seq != nil
      } else if key.matches("repo") {
        guard case .text(let t) = reader.next() else { return false }
        repo = t
      } else if key.matches("rev") {
        guard case .text(let t) = reader.next() else { return false }
        rev = t
      } else if key.matches("time") {
        // A non-string time is dropped later as bad_time, not treated as undecodable.
        if case .text(let t) = reader.next() { time = t }
      } else if key.matches("tooBig") {
        guard case .bool(let b) = reader.next() else { return false }
        tooBig = b
      } else if key.matches("blocks") {
        guard case .bytes(let b) = reader.next() else { return false }
        blocks = b
      } else if key.matches("ops") {
        guard case .array(let count) = reader.next() else { return false }
        let start = reader.offset
        var first: CommitOp? = nil
        var firstLength = 0
        for index in 0..<count {
          guard let op = decodeOp(&reader) else { return false }
          if index == 0 {
            first = op
            firstLength = reader.offset - start
          }
        }
        ops = CommitOps(
          encoded: reader.slice(from: start), count: count, first: first, firstLength: firstLength)
      } else {
        return nil
      }
      return true
    }
    guard ok, let seq, let repo else { return .undecodable }
    return .commit(
      CommitMessage(
        seq: seq, repo: repo, rev: rev ?? UnsafeRawBufferPointer(start: nil, count: 0),
        time: time, tooBig: tooBig, blocks: blocks, ops: ops))
  }

  static func decodeOp(_ reader: inout CBORReader) -> CommitOp? {
    guard case .map(let count) = reader.next() else { return nil }
    var action: UnsafeRawBufferPointer? = nil
    var path: UnsafeRawBufferPointer? = nil
    var cid: UnsafeRawBufferPointer? = nil
    for _ in 0..<count {
      guard case .text(let key) = reader.next() else { return nil }
      if key.matches("action") {
        guard case .text(let t) = reader.next() else { return nil }
        action = t
      } else if key.matches("path") {
        guard case .text(let t) = reader.next() else { return nil }
        path = t
      } else if key.matches("cid") {
        switch reader.next() {
        case .null: cid = nil
        case .tag(42):
          guard let link = reader.readLinkContent() else { return nil }
          cid = link
        default: return nil
        }
      } else {
        guard reader.skipValue() else { return nil }
      }
    }
    guard let action, let path else { return nil }
    return CommitOp(action: action, path: path, cid: cid)
  }

  /// `#identity` (seq, did, time, handle), `#account` (seq, did, time, active, status) and
  /// `#sync` (seq, did, time, rev, blocks; rev and blocks required); another kind's fields, like
  /// any unknown key, are skipped.
  private static func decodeAccountEvent(
    _ body: UnsafeRawBufferPointer, _ kind: AccountEventMessage.Kind
  ) -> FirehoseMessage {
    var seq: Int64? = nil
    var did: UnsafeRawBufferPointer? = nil
    var time: UnsafeRawBufferPointer? = nil
    var handle: UnsafeRawBufferPointer? = nil
    var active = false
    var status: UnsafeRawBufferPointer? = nil
    var rev: UnsafeRawBufferPointer? = nil
    var blocks: UnsafeRawBufferPointer? = nil
    let ok = forEachField(body) { key, reader in
      if key.matches("seq") {
        seq = readSeq(&reader)
        return seq != nil
      } else if key.matches("did") {
        guard case .text(let t) = reader.next() else { return false }
        did = t
      } else if key.matches("time") {
        // A non-string time is dropped later as bad_time, not treated as undecodable.
        if case .text(let t) = reader.next() { time = t }
      } else if kind == .identity, key.matches("handle") {
        guard let value = readOptionalText(&reader) else { return false }
        handle = value
      } else if kind == .account, key.matches("active") {
        guard case .bool(let b) = reader.next() else { return false }
        active = b
      } else if kind == .account, key.matches("status") {
        guard let value = readOptionalText(&reader) else { return false }
        status = value
      } else if kind == .sync, key.matches("rev") {
        guard case .text(let t) = reader.next() else { return false }
        rev = t
      } else if kind == .sync, key.matches("blocks") {
        guard case .bytes(let b) = reader.next() else { return false }
        blocks = b
      } else {
        return nil
      }
      return true
    }
    guard ok, let seq, let did else { return .undecodable }
    var message = AccountEventMessage(
      kind: kind, seq: seq, did: did, time: time, handle: handle, active: active, status: status)
    if kind == .sync {
      guard let rev, let blocks else { return .undecodable }
      message.rev = rev
      message.blocks = blocks
    }
    return .accountEvent(message)
  }

  private static func decodeError(_ body: UnsafeRawBufferPointer) -> FirehoseMessage {
    guard let (code, message) = nameAndMessage(body, nameKey: "error") else {
      return .error(code: "undecodable", message: nil)
    }
    return .error(code: code ?? "unknown", message: message)
  }

  private static func decodeInfo(_ body: UnsafeRawBufferPointer) -> FirehoseMessage {
    guard let (name, message) = nameAndMessage(body, nameKey: "name"), let name else {
      return .undecodable
    }
    return .info(name: name, message: message)
  }

  /// The body of an error frame (`{error, message}`) or an `#info` (`{name, message}`); nil when
  /// it is malformed.
  private static func nameAndMessage(_ body: UnsafeRawBufferPointer, nameKey: StaticString)
    -> (name: String?, message: String?)?
  {
    var name: String? = nil
    var message: String? = nil
    let ok = forEachField(body) { key, reader in
      if key.matches(nameKey) {
        guard case .text(let t) = reader.next() else { return false }
        name = String(decoding: t, as: UTF8.self)
      } else if key.matches("message") {
        guard let value = readOptionalText(&reader) else { return false }
        message = value.map { String(decoding: $0, as: UTF8.self) }
      } else {
        return nil
      }
      return true
    }
    return ok ? (name, message) : nil
  }
}
