import Firehose

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// What a frame turned out to be, for ingest to act on (reconnect on errors, log infos).
public enum FrameOutcome: Sendable, Equatable {
  /// A `#commit`, `#identity`, `#account` or `#sync` with its relay seq (it may have produced no
  /// events).
  case translated(FrameType, seq: Int64)
  /// `code` is the name the error was counted under (`TranslateCounters.errorCodes`: the
  /// relay's code, or `other`, when the message starts with an excerpt of the code); messages
  /// are excerpts (`Excerpt`), short enough to log.
  case error(code: String, message: String?)
  case info(name: String, message: String?)
  /// Legacy, unknown or undecodable frames.
  case ignored(FrameType)
}

/// Turns relay frames into Jetstream v1 events (PROTOCOL §5), plus `sync` events in Contrail's
/// stored form for the v2 wire: decodes each frame, applies the drop rules, converts records,
/// stamps `time_us` from one sequencer, and counts everything.
///
/// Not thread-safe: one translator per ingest pipeline; it reuses its buffers across frames.
public final class Translator {
  /// The mutable state lives behind a pointer: the hot path then pays no exclusivity checks.
  private let state: UnsafeMutablePointer<TranslatorState>

  public init(sequencer: Sequencer = Sequencer()) {
    state = .allocate(capacity: 1)
    state.initialize(to: TranslatorState(sequencer: sequencer))
  }

  deinit {
    state.pointee.release()
    state.deinitialize(count: 1)
    state.deallocate()
  }

  public var sequencer: Sequencer {
    get { state.pointee.sequencer }
    set { state.pointee.sequencer = newValue }
  }

  public var counters: TranslateCounters { state.pointee.counters }

  /// Translates one frame, appending its events (in op order) to `events`.
  @discardableResult
  public func translate(_ frame: UnsafeRawBufferPointer, into events: inout [Event])
    -> FrameOutcome
  {
    state.pointee.translate(frame, into: &events)
  }

  /// Translates one frame, handing each event to `sink` as it is written (no `Event` is built).
  @discardableResult
  public func translate<Sink: EventSink>(_ frame: UnsafeRawBufferPointer, into sink: inout Sink)
    -> FrameOutcome
  {
    state.pointee.translate(frame, into: &sink)
  }

  /// Counts a frame dropped before it reached the translator (`.oversize`: over the size limit).
  public func countDropped(_ type: FrameType) {
    state.pointee.counters.count(frame: type)
  }

  /// Convenience for callers holding the frame as an array.
  @discardableResult
  public func translate(_ frame: [UInt8], into events: inout [Event]) -> FrameOutcome {
    frame.withUnsafeBytes { translate($0, into: &events) }
  }

  /// What one commit may cost, in proportion to its frame (PROTOCOL §5.3): the record blocks
  /// its ops convert, and the JSON of its events. A well-formed commit converts each of its
  /// records once and its events are a few times its size; without these bounds a commit whose
  /// ops all name one large record would turn a few MiB of frame into gigabytes of events.
  public struct FrameBudget: Sendable {
    public var recordBytes: Int
    public var jsonBytes: Int
  }

  /// Every frame may convert its own size in records and write 8 times its size in events,
  /// plus 1 MiB of each.
  public static func frameBudget(_ frameBytes: Int) -> FrameBudget {
    FrameBudget(recordBytes: frameBytes + (1 << 20), jsonBytes: 8 * frameBytes + (1 << 20))
  }

  /// `collection/rkey[/…]`: the text before the first `/`, and after it up to the next `/`.
  static func splitPath(_ path: UnsafeRawBufferPointer)
    -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer)?
  {
    func slash(from start: Int) -> Int? {
      var i = start
      while i < path.count {
        if path[i] == UInt8(ascii: "/") { return i }
        i += 1
      }
      return nil
    }
    guard let first = slash(from: 0) else { return nil }
    let rkeyEnd = slash(from: first + 1) ?? path.count
    return (
      UnsafeRawBufferPointer(rebasing: path[..<first]),
      UnsafeRawBufferPointer(rebasing: path[(first + 1)..<rkeyEnd])
    )
  }
}

/// Everything the translator mutates per frame, with reusable buffers.
private struct TranslatorState {
  /// How much of an error or info frame's message is kept for the log.
  static let messageExcerptBytes = 512
  var sequencer: Sequencer
  var counters = TranslateCounters()
  var converter = RecordConverter()
  var record = ByteSink(capacity: 64 << 10)
  var event = ByteSink(capacity: 64 << 10)
  var blocks: [CARFile.Block] = []
  var collections = CollectionNames()

  init(sequencer: Sequencer) { self.sequencer = sequencer }

  func release() {
    converter.release()
    record.release()
    event.release()
    collections.release()
  }

  mutating func translate<Sink: EventSink>(_ frame: UnsafeRawBufferPointer, into events: inout Sink)
    -> FrameOutcome
  {
    let message = FrameDecoder.decode(frame)
    counters.count(frame: message.type)
    switch message {
    case .commit(let commit):
      translate(commit, frameBytes: frame.count, into: &events)
      return .translated(.commit, seq: commit.seq)
    case .accountEvent(let message):
      let outcome = FrameOutcome.translated(message.kind.frameType, seq: message.seq)
      guard let time = message.time, RFC3339.isValid(time) else {
        counters.count(drop: .badTime, .event)
        return outcome
      }
      if message.blocks.count > AccountEventMessage.maxSyncBlocksBytes {
        counters.count(drop: .tooBig, .event)
        return outcome
      }
      let timeUS = sequencer.next()
      event.count = 0
      EventJSON.accountEvent(message, time: time, timeUS: timeUS, to: &event)
      let kind: EventKind =
        switch message.kind {
        case .identity: .identity
        case .account: .account
        case .sync: .sync
        }
      append(kind, timeUS, message.seq, message.did, "", into: &events)
      return outcome
    case .error(let code, let detail):
      let name = counters.count(errorCode: code)
      let message = detail.map { Excerpt.of($0, limit: Self.messageExcerptBytes) }
      // A named code is at most 64 bytes, but still the relay's text: printable for the log.
      guard name != code else {
        return .error(
          code: Excerpt.of(code, limit: TranslateCounters.maxErrorCodeBytes), message: message)
      }
      let shown = "code \(Excerpt.of(code, limit: TranslateCounters.maxErrorCodeBytes))"
      return .error(code: name, message: message.map { shown + ": " + $0 } ?? shown)
    case .info(let name, let detail):
      return .info(
        name: Excerpt.of(name, limit: TranslateCounters.maxErrorCodeBytes),
        message: detail.map { Excerpt.of($0, limit: Self.messageExcerptBytes) })
    case .ignored(let type):
      return .ignored(type)
    case .undecodable:
      return .ignored(.undecodable)
    }
  }

  private mutating func translate<Sink: EventSink>(
    _ commit: CommitMessage, frameBytes: Int, into events: inout Sink
  ) {
    if commit.tooBig { return counters.count(drop: .tooBig, .commit) }
    guard let time = commit.time, RFC3339.isValid(time) else {
      return counters.count(drop: .badTime, .commit)
    }
    guard let car = commit.blocks, let rootCID = CARFile.read(car, into: &blocks),
      let root = CARFile.block(for: rootCID, in: blocks), CommitBlock(root) != nil
    else { return counters.count(drop: .badCar, .commit) }
    var budget = Translator.frameBudget(frameBytes)
    // Once an op goes past a budget, every later op is dropped unread: an op dropped after its
    // event was written must not be followed by more such ops (each could cost as much again).
    var spent = false
    for op in commit.ops {
      if spent {
        counters.count(drop: .overBudget, .op)
        continue
      }
      guard let (collection, rkey) = Translator.splitPath(op.path) else {
        counters.count(drop: .badPath, .op)
        continue
      }
      let operation: EventJSON.Operation
      if op.action.matches("create") {
        operation = .create
      } else if op.action.matches("update") {
        operation = .update
      } else if op.action.matches("delete") {
        operation = .delete
      } else {
        counters.count(drop: .unknownAction, .op)
        continue
      }
      record.count = 0
      var cid: UnsafeRawBufferPointer? = nil
      if operation != .delete {
        guard let opCID = op.cid else {
          counters.count(drop: .nullCid, .op)
          continue
        }
        guard let block = CARFile.block(for: opCID, in: blocks) else {
          counters.count(drop: .missingBlock, .op)
          continue
        }
        guard block.count <= budget.recordBytes else {
          counters.count(drop: .overBudget, .op)
          spent = true
          continue
        }
        budget.recordBytes -= block.count
        guard converter.write(block, to: &record) else {
          counters.count(drop: .badRecord, .op)
          continue
        }
        cid = opCID
      }
      let timeUS = sequencer.next()
      event.count = 0
      EventJSON.commit(
        did: commit.repo, timeUS: timeUS, rev: commit.rev, operation: operation,
        collection: collection, rkey: rkey, record: record.bytes, cid: cid, to: &event)
      guard event.count <= budget.jsonBytes else {
        counters.count(drop: .overBudget, .op)
        spent = true
        continue
      }
      budget.jsonBytes -= event.count
      append(.commit, timeUS, commit.seq, commit.repo, collections.name(collection), into: &events)
    }
  }

  private mutating func append<Sink: EventSink>(
    _ kind: EventKind, _ timeUS: Int64, _ seq: Int64, _ did: UnsafeRawBufferPointer,
    _ collection: String, into sink: inout Sink
  ) {
    counters.count(event: kind)
    sink.take(
      EventHeader(timeUS: timeUS, seq: seq, kind: kind, did: did, collection: collection),
      json: event.bytes)
  }
}
