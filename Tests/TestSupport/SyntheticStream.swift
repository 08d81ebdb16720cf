import Broadcast
import Compression
import EventLog
import Events
import Ingest
import Synchronization
import SyntheticFirehose

/// Generated events in every form the pipeline holds them: translated (JSON), stored (log
/// records) and live (ring entries), compressed once with the default dictionary.
public struct SyntheticStream: Sendable {
  public let events: [Event]
  public let records: [LogRecord]
  public let broadcast: [BroadcastEvent]
  public let dictionary: ZstdDictionary

  /// `frames` generator frames (`seed`), with time_us counting up from `start + 1`, `spacing`
  /// µs apart, and event seqs from `firstEventSeq`.
  public init(
    frames: Int, seed: UInt64, start: Int64 = 1_000_000, spacing: Int64 = 1,
    firstEventSeq: Int64 = 1
  ) throws {
    dictionary = try ZstdDictionary(
      path: SharedData.defaultDictionaryPath)
    let compressor = try EventCompressor(dictionary: dictionary)
    var generator = FirehoseGenerator(seed: seed)
    let ticks = Ticks(start: start, spacing: spacing)
    let translator = Translator(sequencer: Sequencer(last: start, clock: { ticks.next() }))
    var events: [Event] = []
    for _ in 0..<frames { translator.translate(generator.next(), into: &events) }
    var records: [LogRecord] = []
    var broadcast: [BroadcastEvent] = []
    for event in events {
      let frame = try compressor.compress(event.json)
      let eventSeq = firstEventSeq + Int64(records.count)
      records.append(LogRecord(event, eventSeq: eventSeq, payload: frame))
      broadcast.append(BroadcastEvent(event, eventSeq: eventSeq, compressed: frame))
    }
    self.events = events
    self.records = records
    self.broadcast = broadcast
  }

  /// Stores `range` through ingest's store path (`EventStore`: compress, append, publish).
  public func ingest(_ range: Range<Int>, log: EventLog, ring: LiveRing) throws {
    let outcome = try EventStore(log: log, ring: ring, dictionary: dictionary).store(
      Array(events[range]))
    if let error = outcome.error { throw error }
  }
}

/// A clock that moves `spacing` µs per reading.
final class Ticks: Sendable {
  private let now: Atomic<Int64>
  private let spacing: Int64

  init(start: Int64, spacing: Int64) {
    now = Atomic(start)
    self.spacing = spacing
  }

  func next() -> Int64 { now.add(spacing, ordering: .relaxed).newValue }
}
