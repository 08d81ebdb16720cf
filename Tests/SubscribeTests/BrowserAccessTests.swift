import Broadcast
import Compression
import Subscribe
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// What a browser page on another origin needs: every resource answers GET, HEAD and the
/// OPTIONS preflight, and allows any origin.
final class BrowserAccessTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// One request; the whole response (the server closes: `Connection: close`).
  private func request(_ port: Int, _ method: String, _ target: String, _ headers: String = "")
    throws -> (head: String, body: [UInt8])
  {
    let fd = try RawSocket.connect(port: port)
    defer { close(fd) }
    let text =
      "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://example.org\r\n"
      + "Connection: close\r\n\(headers)\r\n"
    XCTAssertTrue(RawSocket.send(fd, Array(text.utf8)))
    let response = RawSocket.readToEnd(fd, timeout: .seconds(10)).bytes
    let split = try XCTUnwrap(
      response.indices.first { response[$0...].starts(with: Array("\r\n\r\n".utf8)) })
    // Header names compared in lower case (HTTP's are case-insensitive).
    return (
      String(decoding: response[..<split], as: UTF8.self).lowercased(),
      Array(response[(split + 4)...])
    )
  }

  func testCrossOriginGetHeadAndPreflight() async throws {
    let log = try TemporaryLog.open("browser", directories: &directories)
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let server = try await TestServer.start(log: log, dictionary: dictionary)
    defer { Task { try? await server.stop() } }

    let get = try request(server.port, "GET", "/dictionary")
    XCTAssertTrue(get.head.hasPrefix("http/1.1 200"), get.head)
    XCTAssertTrue(get.head.contains("access-control-allow-origin: *"), get.head)
    XCTAssertEqual(get.body, dictionary.bytes)

    let head = try request(server.port, "HEAD", "/dictionary")
    XCTAssertTrue(head.head.hasPrefix("http/1.1 200"), head.head)
    XCTAssertTrue(head.head.contains("content-length: \(dictionary.bytes.count)"), head.head)
    XCTAssertTrue(head.head.contains("access-control-allow-origin: *"), head.head)
    XCTAssertTrue(head.body.isEmpty)

    let preflight = try request(
      server.port, "OPTIONS", "/healthz",
      "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-test\r\n")
    XCTAssertTrue(preflight.head.hasPrefix("http/1.1 204"), preflight.head)
    XCTAssertTrue(preflight.head.contains("access-control-allow-origin: *"), preflight.head)
    XCTAssertTrue(
      preflight.head.contains("access-control-allow-methods: get, head, options"), preflight.head)
    XCTAssertTrue(preflight.head.contains("access-control-allow-headers: x-test"), preflight.head)

    let post = try request(server.port, "POST", "/healthz", "Content-Length: 0\r\n")
    XCTAssertTrue(post.head.hasPrefix("http/1.1 405"), post.head)
    XCTAssertTrue(post.head.contains("allow: get, head, options"), post.head)
    XCTAssertTrue(try request(server.port, "GET", "/nope").head.hasPrefix("http/1.1 404"))
  }
}
