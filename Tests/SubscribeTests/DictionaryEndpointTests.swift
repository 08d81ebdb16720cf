import Compression
import NIOHTTP1
import TestSupport
import XCTest

@testable import Subscribe

/// PROTOCOL-v2 §5: `getZstdDictionary` answers, without a socket.
final class DictionaryEndpointTests: XCTestCase {
  private var endpoint: DictionaryEndpoint!
  private var dictionary: ZstdDictionary { endpoint.dictionary }
  /// Sun, 06 Nov 1994 08:49:37 GMT.
  private let started: Int64 = 784_111_777

  override func setUpWithError() throws {
    endpoint = DictionaryEndpoint(
      dictionary: try ZstdDictionary(path: SharedData.defaultDictionaryPath),
      lastModified: started)
  }

  private func get(
    _ query: String = "", _ headers: [(String, String)] = [], method: HTTPMethod = .GET
  ) -> DictionaryEndpoint.Response {
    endpoint.respond(method: method, query: Substring(query), headers: HTTPHeaders(headers))
  }

  private func assertJSON(
    _ response: DictionaryEndpoint.Response, _ status: HTTPResponseStatus, _ body: String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(response.status, status, file: file, line: line)
    XCTAssertEqual(
      response.headers["Content-Type"], ["application/json"], file: file, line: line)
    XCTAssertEqual(String(decoding: response.body, as: UTF8.self), body, file: file, line: line)
  }

  func testTheDictionaryWithItsHeaders() {
    let id = dictionary.id
    for query in ["", "id=\(id)", "id=%2B\(id)", "id=00\(id)", "other=1&id=\(id)&id=x"] {
      let response = get(query)
      XCTAssertEqual(response.status, .ok, query)
      XCTAssertEqual(response.body, dictionary.bytes, query)
      XCTAssertEqual(
        response.headers.map { "\($0.name): \($0.value)" },
        [
          "ETag: \"zstd-dict-\(id)\"", "Cache-Control: public, max-age=31536000, immutable",
          "X-Zstd-Dictionary-Id: \(id)", "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT",
          "Accept-Ranges: bytes", "Content-Type: application/octet-stream",
        ], query)
    }
    XCTAssertEqual(get(method: .HEAD), get(), "HEAD answers like GET (the server drops the body)")
  }

  func testIDsThatAreNotIntegers() {
    let body = #"{"error":"InvalidRequest","message":"id must be an integer zstd dictionary ID"}"#
    for query in ["id=", "id", "id=abc", "id=1.5", "id=9223372036854775808", "id=+1", "id=0x1"] {
      assertJSON(get(query), .badRequest, body)
    }
    assertJSON(get("id=&id=\(dictionary.id)"), .badRequest, body)
  }

  func testOtherIDs() {
    let id = dictionary.id
    for (query, named) in [
      ("id=1612007021", "1612007021"), ("id=0", "0"), ("id=-5", "-5"),
      ("id=9223372036854775807", "9223372036854775807"), ("id=\(id + 1)", "\(id + 1)"),
    ] {
      assertJSON(
        get(query), .notFound,
        #"{"error":"DictionaryNotFound","message":"no dictionary with id "#
          + "\(named); current dictionary id is \(id)\"}")
    }
    // The ID is checked before any conditional header.
    XCTAssertEqual(get("id=1", [("If-None-Match", endpoint.etag)]).status, .notFound)
  }

  func testOtherMethods() {
    for method in [HTTPMethod.POST, .PUT, .DELETE, .PATCH] {
      let response = get(method: method)
      assertJSON(
        response, .methodNotAllowed, #"{"error":"MethodNotAllowed","message":"expected GET"}"#)
      XCTAssertEqual(response.headers["Allow"], ["GET, HEAD, OPTIONS"])
    }
  }

  func testIfNoneMatch() {
    let etag = endpoint.etag
    for value in [etag, "W/\(etag)", "\"other\", \(etag)", "\"a\",\(etag)", "*", " \(etag) "] {
      let response = get("", [("If-None-Match", value)])
      XCTAssertEqual(response.status, .notModified, value)
      XCTAssertTrue(response.body.isEmpty)
      XCTAssertEqual(
        response.headers.map(\.name), ["ETag", "Cache-Control", "X-Zstd-Dictionary-Id"], value)
    }
    XCTAssertEqual(get("", [("If-None-Match", "\"zstd-dict-1\"")]).status, .ok)
    XCTAssertEqual(get("", [("If-None-Match", "zstd-dict-\(dictionary.id)")]).status, .ok)
    XCTAssertEqual(get("", [("If-None-Match", etag)], method: .HEAD).status, .notModified)
    XCTAssertEqual(get("id=\(dictionary.id)", [("If-None-Match", etag)]).status, .notModified)
  }

  func testIfModifiedSince() {
    XCTAssertEqual(
      get("", [("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]).status, .notModified)
    XCTAssertEqual(
      get("", [("If-Modified-Since", "Mon, 07 Nov 1994 00:00:00 GMT")]).status, .notModified)
    XCTAssertEqual(get("", [("If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")]).status, .ok)
    XCTAssertEqual(get("", [("If-Modified-Since", "yesterday")]).status, .ok)
    // If-None-Match, when present, decides alone.
    XCTAssertEqual(
      get(
        "",
        [
          ("If-None-Match", "\"other\""), ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]
      ).status, .ok)
  }

  func testRanges() {
    let bytes = dictionary.bytes
    let size = bytes.count
    func assertPart(
      _ range: String, _ part: Range<Int>, _ extra: [(String, String)] = [],
      file: StaticString = #filePath, line: UInt = #line
    ) {
      let response = get("", [("Range", range)] + extra)
      XCTAssertEqual(response.status, .partialContent, range, file: file, line: line)
      XCTAssertEqual(response.body, Array(bytes[part]), range, file: file, line: line)
      XCTAssertEqual(
        response.headers["Content-Range"],
        ["bytes \(part.lowerBound)-\(part.upperBound - 1)/\(size)"], range, file: file,
        line: line)
      XCTAssertEqual(
        response.headers["Content-Type"], ["application/octet-stream"], file: file, line: line)
    }
    assertPart("bytes=0-7", 0..<8)
    assertPart("bytes=4-", 4..<size)
    assertPart("bytes=-16", (size - 16)..<size)
    assertPart("bytes=-\(size * 2)", 0..<size)
    assertPart("bytes=10-\(size * 3)", 10..<size)
    assertPart("bytes=0-3", 0..<4, [("If-Range", endpoint.etag)])
    assertPart("bytes=0-3", 0..<4, [("If-Range", "Sun, 06 Nov 1994 08:49:37 GMT")])

    for unsatisfiable in ["bytes=\(size)-", "bytes=\(size + 5)-\(size + 9)", "bytes=-0"] {
      let response = get("", [("Range", unsatisfiable)])
      XCTAssertEqual(response.status, .rangeNotSatisfiable, unsatisfiable)
      XCTAssertEqual(response.headers["Content-Range"], ["bytes */\(size)"])
    }
    for ignored in ["bytes=0-1,4-5", "bytes=5-2", "items=0-3", "bytes=a-b", "bytes=-"] {
      XCTAssertEqual(get("", [("Range", ignored)]), get(), ignored)
    }
    XCTAssertEqual(get("", [("Range", "bytes=0-3"), ("If-Range", "\"zstd-dict-1\"")]), get())
  }

  func testHTTPDates() {
    XCTAssertEqual(HTTPDate.format(0), "Thu, 01 Jan 1970 00:00:00 GMT")
    XCTAssertEqual(HTTPDate.format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
    XCTAssertEqual(HTTPDate.format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT")
    XCTAssertEqual(HTTPDate.format(1_786_492_800), "Wed, 12 Aug 2026 00:00:00 GMT")
    XCTAssertEqual(HTTPDate.format(-1), "Wed, 31 Dec 1969 23:59:59 GMT")
    for seconds: Int64 in [0, 784_111_777, 951_782_400, 1_786_492_799, 4_102_444_800] {
      XCTAssertEqual(HTTPDate.parse(HTTPDate.format(seconds)), seconds)
    }
    for bad in [
      "", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
      "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Xyz 1994 08:49:37 GMT",
      "Sun, 6 Nov 1994 08:49:37 GMTx", "Sun, 06 Nov 1994 25:49:37 GMT",
    ] {
      XCTAssertNil(HTTPDate.parse(bad), bad)
    }
  }
}
