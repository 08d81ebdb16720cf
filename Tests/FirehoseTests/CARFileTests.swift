import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

final class CARFileTests: XCTestCase {
  private func cidString(_ cid: UnsafeRawBufferPointer) -> String {
    var sink = ByteSink()
    defer { sink.release() }
    CID.appendString(cid, to: &sink)
    return String(decoding: sink.bytes, as: UTF8.self)
  }

  /// PROTOCOL §11.3: the real repository export.
  func testRealRepositoryExport() throws {
    guard let carPath = SharedData.path("corpus/jetstream-v1-capture/repo.car"),
      let tsvPath = SharedData.path("corpus/jetstream-v1-capture/car_expected_records.tsv"),
      let commitPath = SharedData.path("corpus/jetstream-v1-capture/car_expected_commit.txt")
    else { throw XCTSkip(SharedData.skipMessage) }
    let car = try XCTUnwrap(SharedData.read(carPath))
    let rows = String(decoding: try XCTUnwrap(SharedData.read(tsvPath)), as: UTF8.self)
      .split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
    let expectedCommit = String(decoding: try XCTUnwrap(SharedData.read(commitPath)), as: UTF8.self)
    XCTAssertEqual(rows.count, 23)
    try car.withUnsafeBytes { raw in
      let file = try XCTUnwrap(CARFile(raw))
      XCTAssertEqual(file.blocks.count, 29)
      let commit = try XCTUnwrap(CommitBlock(try XCTUnwrap(file.block(for: file.root))))
      XCTAssertEqual(commit.version, 3)
      XCTAssertTrue(expectedCommit.contains("DID: \(String(decoding: commit.did!, as: UTF8.self))"))
      XCTAssertTrue(
        expectedCommit.contains("Revision: \(String(decoding: commit.rev!, as: UTF8.self))"))
      XCTAssertTrue(expectedCommit.contains("Data CID: \(cidString(commit.data!))"))
      XCTAssertNil(commit.prev)
      var byCID: [String: UnsafeRawBufferPointer] = [:]
      for block in file.blocks { byCID[cidString(block.cid)] = block.data }
      for row in rows {
        let data = try XCTUnwrap(byCID[row[1]], "block for \(row[0])")
        XCTAssertNotNil(recordJSON(bytes: Array(data)), "record \(row[0]) converts")
      }
    }
  }

  func testBuiltCARRoundTrips() throws {
    let blocks = (0..<5).map { i in CBORValue.map([("i", .int(Int64(i)))]).encoded }
    let sections = blocks.map { (cid: FrameBuilder.cid(of: $0), data: $0) }
    let car = FrameBuilder.car(root: sections[0].cid, blocks: sections)
    try car.withUnsafeBytes { raw in
      let file = try XCTUnwrap(CARFile(raw))
      XCTAssertEqual(Array(file.root), sections[0].cid)
      XCTAssertEqual(file.blocks.map { Array($0.cid) }, sections.map(\.cid))
      XCTAssertEqual(file.blocks.map { Array($0.data) }, blocks)
    }
    // Every truncation inside a section or the header is rejected.
    let headerEnd = car.count - sections.reduce(0) { $0 + $1.cid.count + $1.data.count + 1 }
    var boundaries: Set<Int> = [headerEnd]
    var offset = headerEnd
    for s in sections {
      offset += 1 + s.cid.count + s.data.count
      boundaries.insert(offset)
    }
    for cut in 0..<car.count where !boundaries.contains(cut) {
      XCTAssertNil(Array(car[..<cut]).withUnsafeBytes { CARFile($0) }, "cut at \(cut)")
    }
  }

  func testBadHeadersAreRejected() {
    let block = CBORValue.map([("i", 1)]).encoded
    let cid = FrameBuilder.cid(of: block)
    func car(header: CBORValue) -> [UInt8] {
      let h = header.encoded
      var out: [UInt8] = []
      Varint.append(h.count, to: &out)
      return out + h
    }
    let headers: [CBORValue] = [
      .map([("roots", .array([.link(cid)])), ("version", 2)]),
      .map([("roots", .array([])), ("version", 1)]),
      .map([("version", 1)]),
      .map([("roots", .array([.text("x")])), ("version", 1)]),
      .array([]),
    ]
    for header in headers {
      XCTAssertNil(car(header: header).withUnsafeBytes { CARFile($0) })
    }
  }
}
