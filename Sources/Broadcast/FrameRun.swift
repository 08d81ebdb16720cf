import Events
import NIOCore

/// Events a subscriber sends together, as the feed hands them out: consecutive events whose
/// frames are adjacent in one `FrameBlock` (one slice of it on the wire), or one event without
/// a frame of the subscriber's form (its payload, framed when sent). A batch of runs holds one
/// reference per run, not the events themselves, so reading the shared ring costs each
/// subscriber little beyond the scan.
public struct FrameRun: Sendable {
  /// The block holding the run's frames, or nil for an event without frames (`payload`).
  public let block: FrameBlock?
  /// The run's frames in `block.buffer(binary:)` of the subscriber's form.
  public let range: Range<Int>
  /// The payload of an event without frames.
  public let payload: ByteBuffer?
  public let events: Int
  public let firstTimeUS: Int64
  public let lastTimeUS: Int64
  /// The events' JSON bytes and the bytes of the payloads sent (for the metrics).
  public let jsonBytes: Int
  public let payloadBytes: Int

  /// The run's bytes on the wire.
  public var frameBytes: Int {
    block == nil ? FrameHeader.size(payloadBytes) + payloadBytes : range.count
  }
}

/// What one read of a subscriber's feed found, as runs ready to send.
public struct FeedBatch: Sendable {
  public var runs: [FrameRun] = []
  /// Events read that pass the filter, those skipped for `maxMessageSizeBytes` included.
  public var events = 0
  /// Of those, skipped for `maxMessageSizeBytes` (not in `runs`).
  public var oversize = 0
  /// Events scanned that did not pass the filter.
  public var filteredOut = 0
  /// The feed's position after the read (it may have scanned past the last event).
  public var position: Int64
  /// Read from the log (else from the ring).
  public var fromDisk: Bool

  public init(position: Int64, fromDisk: Bool) {
    self.position = position
    self.fromDisk = fromDisk
  }
}

/// Gathers events that pass the filter into runs (`FeedBatch.runs`).
struct RunBuilder {
  let binary: Bool
  /// Events whose JSON is longer are skipped (0: none).
  let maxJSONLength: Int64
  private(set) var runs: [FrameRun] = []
  private(set) var events = 0
  private(set) var oversize = 0
  // The run being gathered: frames in `block` from `start` to `end`.
  private var block: FrameBlock? = nil
  private var blockID: ObjectIdentifier? = nil
  private var start = 0
  private var end = 0
  private var count = 0
  private var first: Int64 = 0
  private var last: Int64 = 0
  private var jsonBytes = 0
  private var payloadBytes = 0

  init(binary: Bool, maxJSONLength: Int64) {
    self.binary = binary
    self.maxJSONLength = maxJSONLength
  }

  /// Adds an event that passes the filter, looked at in place: joining a run reads only plain
  /// values; a new run takes one reference to its block.
  mutating func add(_ event: UnsafePointer<BroadcastEvent>) {
    events += 1
    let jsonLength = event.pointee.jsonLength
    if maxJSONLength > 0 && Int64(jsonLength) > maxJSONLength {
      oversize += 1
      close()
      return
    }
    if let id = event.pointee.blockID, let range = event.pointee.frameRanges.range(binary: binary) {
      if count > 0, id == blockID, end == range.lowerBound {
        end = range.upperBound
      } else {
        close()
        block = event.pointee.frames!.block
        blockID = id
        start = range.lowerBound
        end = range.upperBound
        first = event.pointee.timeUS
      }
      count += 1
      last = event.pointee.timeUS
      jsonBytes += jsonLength
      payloadBytes += WireFrames.payloadLength(frameLength: range.count)
      return
    }
    close()
    let payload = binary ? event.pointee.compressed : event.pointee.json ?? ByteBuffer()
    runs.append(
      FrameRun(
        block: nil, range: 0..<0, payload: payload, events: 1, firstTimeUS: event.pointee.timeUS,
        lastTimeUS: event.pointee.timeUS, jsonBytes: jsonLength,
        payloadBytes: payload.readableBytes))
  }

  /// Adds events that pass the filter.
  mutating func add(_ events: [BroadcastEvent]) {
    events.withUnsafeBufferPointer { events in
      for index in events.indices { add(events.baseAddress! + index) }
    }
  }

  /// Ends the run being gathered.
  mutating func close() {
    guard count > 0, let block else { return }
    runs.append(
      FrameRun(
        block: block, range: start..<end, payload: nil, events: count, firstTimeUS: first,
        lastTimeUS: last, jsonBytes: jsonBytes, payloadBytes: payloadBytes))
    self.block = nil
    count = 0
    jsonBytes = 0
    payloadBytes = 0
  }

  /// The batch (after `close`).
  mutating func batch(position: Int64, fromDisk: Bool, filteredOut: Int) -> FeedBatch {
    close()
    var batch = FeedBatch(position: position, fromDisk: fromDisk)
    batch.runs = runs
    batch.events = events
    batch.oversize = oversize
    batch.filteredOut = filteredOut
    return batch
  }
}
