import ArgumentParser
import EventLog
import Events
import Foundation

/// `contrail inspect`: what a data directory holds. Read-only; safe on a live directory.
struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Describe an event log: segments, time range, events by kind, top collections, bytes.",
    discussion:
      "With --verify, exits 0 only if every record's checksum holds and no sealed segment ends in "
      + "part of a record.")

  @Argument(help: "The data directory.")
  var dataDir: String

  @Flag(help: "Check every record's checksum and every sealed segment's end; exit 1 if any fails.")
  var verify = false

  func run() throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dataDir, isDirectory: &isDirectory),
      isDirectory.boolValue
    else {
      throw CLIError("\(dataDir): no such data directory")
    }
    let log = try EventLog(EventLog.Configuration(directory: dataDir), readOnly: true)
    let stats = log.stats
    let reader = log.reader(from: nil)
    var kinds: [EventKind: Int] = [:]
    var collections: [String: Int] = [:]
    var payload = 0
    while let record = reader.next() {
      kinds[record.kind, default: 0] += 1
      if !record.collection.isEmpty { collections[record.collection, default: 0] += 1 }
      payload += record.payload.count
    }
    let events = kinds.values.reduce(0, +)
    print("data directory: \(dataDir)")
    print("segments: \(stats.segments), bytes on disk: \(stats.bytes)")
    if let oldest = stats.oldestTimeUS, let newest = stats.newestTimeUS {
      print(
        "time range: \(Self.date(oldest)) – \(Self.date(newest)) (time_us \(oldest) – \(newest))")
    }
    if let oldest = stats.oldestEventSeq, let newest = stats.newestEventSeq {
      print("event seqs: \(oldest) – \(newest)")
    }
    print("last event seq assigned: \(log.lastEventSeq)")
    print(
      "events: \(events) ("
        + EventKind.allCases.map { "\($0.label) \(kinds[$0] ?? 0)" }.joined(separator: ", ") + ")")
    if events > 0 {
      print(
        "stored bytes per event: \(format1(Double(stats.bytes) / Double(events))) "
          + "(payload \(format1(Double(payload) / Double(events))), overhead \(format1(Double(stats.bytes - payload) / Double(events))))"
      )
    }
    print("top collections:")
    for (name, count) in collections.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).prefix(
      10)
    {
      print("  \(count)\t\(name)")
    }
    print("segments (oldest first):")
    for segment in log.segmentSummaries {
      let seqs =
        segment.firstEventSeq.map { "event seq \($0) – \(segment.lastEventSeq!)" }
        ?? "no records (base event seq \(segment.baseEventSeq))"
      print("  \(segment.name)\t\(segment.events) events\t\(segment.bytes) bytes\t\(seqs)")
    }
    print("corrupt records skipped: \(stats.corruptions)")
    for note in log.recoveryReport { print("damaged: \(note)") }
    if stats.unreadTail > 0 {
      print(
        "newest segment: \(stats.unreadTail) bytes after the last whole record (a write in flight, or a torn tail)"
      )
    }
    if verify {
      guard log.recoveryReport.isEmpty else { throw ExitCode(1) }
      print("verify: every record's checksum holds")
    }
  }

  static func date(_ microseconds: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: Double(microseconds) / 1e6))
  }
}
