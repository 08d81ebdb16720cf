import EventLog
import Events
import XCTest

/// The replication stream's record messages (OPERATIONS §10): a record survives encode/decode
/// exactly, and every malformed message is refused with a reason, never a trap.
final class ReplicationMessageTests: XCTestCase {
  private let record = LogRecord(
    timeUS: 1_700_000_000_000_123, seq: 987_654, eventSeq: 4_321, kind: .commit,
    did: "did:plc:abcdefghijklmnopqrstuvwx", collection: "app.bsky.feed.post",
    payload: Array("a zstd frame".utf8))

  private func decode(_ bytes: [UInt8]) throws -> LogRecord {
    try bytes.withUnsafeBytes { try ReplicationMessage.decode($0) }
  }

  func testARecordSurvivesEncodeAndDecode() throws {
    XCTAssertEqual(try decode(ReplicationMessage.encode(record)), record)
    let sync = LogRecord(
      timeUS: 5, seq: 0, eventSeq: 1, kind: .sync, did: "did:web:example.com", collection: "",
      payload: [0])
    XCTAssertEqual(try decode(ReplicationMessage.encode(sync)), sync)
  }

  /// Cut anywhere before the payload's first byte, a message is refused.
  func testEveryTruncationIsRefused() throws {
    let message = ReplicationMessage.encode(record)
    let payloadStart = message.count - record.payload.count
    for length in 0..<(payloadStart + 1) {
      XCTAssertThrowsError(try decode(Array(message.prefix(length))), "length \(length)")
    }
  }

  func testOutOfRangeFieldsAreRefused() throws {
    var message = ReplicationMessage.encode(record)
    message[24] = 9  // kind
    XCTAssertThrowsError(try decode(message))
    message = ReplicationMessage.encode(record)
    message[25] = 0xFF  // DID length 0xFF.. > 2048
    message[26] = 0xFF
    XCTAssertThrowsError(try decode(message))
    for eventSeq: Int64 in [0, -1, EventLog.eventSeqLimit] {
      let bad = LogRecord(
        timeUS: 1, seq: 1, eventSeq: eventSeq, kind: .commit, did: "did:plc:x", collection: "",
        payload: [1])
      XCTAssertThrowsError(try decode(ReplicationMessage.encode(bad)), "event seq \(eventSeq)")
    }
    // Found in review: a relay seq of Int64.min trapped the edge's append (an offset from the
    // segment's base overflowed), and a time_us or seq past the log's storable range was stored
    // as a segment base the next start refused to open.
    let limit = EventLog.storableRange.upperBound
    for (timeUS, seq): (Int64, Int64) in [
      (1, Int64.min), (1, -1), (1, limit + 1), (1, Int64.max), (limit + 1, 1), (Int64.max, 1),
    ] {
      let bad = LogRecord(
        timeUS: timeUS, seq: seq, eventSeq: 1, kind: .commit, did: "did:plc:x", collection: "",
        payload: [1])
      XCTAssertThrowsError(try decode(ReplicationMessage.encode(bad)), "time \(timeUS) seq \(seq)")
    }
    let atTheLimit = LogRecord(
      timeUS: limit, seq: limit, eventSeq: 1, kind: .commit, did: "did:plc:x", collection: "",
      payload: [1])
    XCTAssertEqual(try decode(ReplicationMessage.encode(atTheLimit)), atTheLimit)
    let noDID = LogRecord(
      timeUS: 1, seq: 1, eventSeq: 1, kind: .commit, did: "", collection: "", payload: [1])
    XCTAssertThrowsError(try decode(ReplicationMessage.encode(noDID)))
  }

  /// Found by FuzzReplicationMessage: a DID and a collection that are not UTF-8 used to decode
  /// with replacement characters (and then did not survive a round trip); they are refused.
  func testFuzzFindingNonUTF8FieldsAreRefused() throws {
    let hex = [
      "000000000003000087870800020c00000000090000000000000800757ef6e000",
      "0002008000090002fefefefefefefefefefefefefefefefefefefefefefefefe",
      "fefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefe",
      "fefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefe",
      "fefefefefefefefefefefefefefefefefefefefefefefefefefefe0009000900",
      "0000000002010000000026",
    ].joined()
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
      let next = hex.index(index, offsetBy: 2)
      bytes.append(UInt8(hex[index..<next], radix: 16)!)
      index = next
    }
    XCTAssertThrowsError(try decode(bytes)) { error in
      XCTAssertTrue("\(error)".contains("not UTF-8"), "\(error)")
    }
  }
}
