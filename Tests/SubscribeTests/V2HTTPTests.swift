import Compression
import Foundation
import Prometheus
import Subscribe
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// The v2 wire's plain HTTP answers over real sockets (PROTOCOL-v2 §1.1, §1.2, §5):
/// `getZstdDictionary`, and `subscribeEvents` requests that are refused before any upgrade.
final class V2HTTPTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func server(readiness: @escaping @Sendable () -> String? = { nil }) async throws
    -> (TestServer, ZstdDictionary)
  {
    let log = try TemporaryLog.open("v2http", directories: &directories)
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let server = try await TestServer.start(log: log, dictionary: dictionary, metrics: registry) {
      $0.readiness = readiness
    }
    return (server, dictionary)
  }

  private struct Response {
    /// The status line and headers, header names and values in lower case.
    let head: String
    let body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var status: Int { Int(head.split(separator: " ")[1]) ?? 0 }

    func header(_ name: String) -> [String] {
      head.split(separator: "\r\n").dropFirst().compactMap { line in
        let parts = line.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0] == name.lowercased() else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
      }
    }
  }

  /// One request on its own connection, read to the server's close.
  private func request(
    _ port: Int, _ method: String, _ target: String, _ headers: String = "",
    version: String = "HTTP/1.1", close: Bool = true
  ) throws -> Response {
    let fd = try RawSocket.connect(port: port)
    defer { Glibc.close(fd) }
    let text =
      "\(method) \(target) \(version)\r\nHost: 127.0.0.1\r\n"
      + (close ? "Connection: close\r\n" : "") + "\(headers)\r\n"
    XCTAssertTrue(RawSocket.send(fd, Array(text.utf8)))
    let response = RawSocket.readToEnd(fd, timeout: .seconds(10)).bytes
    let split = try XCTUnwrap(
      response.indices.first { response[$0...].starts(with: Array("\r\n\r\n".utf8)) },
      "no complete response head: \(String(decoding: response, as: UTF8.self))")
    return Response(
      head: String(decoding: response[..<split], as: UTF8.self).lowercased(),
      body: Array(response[(split + 4)...]))
  }

  private let dictionaryPath = "/xrpc/network.bsky.jetstream.getZstdDictionary"
  private let subscribePath = "/xrpc/network.bsky.jetstream.subscribeEvents"
  private let handshake =
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

  func testGetZstdDictionary() async throws {
    let (server, dictionary) = try await server(readiness: { "not connected to the relay yet" })
    defer { Task { try? await server.stop() } }
    let id = dictionary.id

    // Served while not ready, with or without the current ID.
    for target in [dictionaryPath, dictionaryPath + "?id=\(id)"] {
      let get = try request(server.port, "GET", target)
      XCTAssertEqual(get.status, 200, get.head)
      XCTAssertEqual(get.body, dictionary.bytes)
      XCTAssertEqual(get.header("content-type"), ["application/octet-stream"])
      XCTAssertEqual(get.header("etag"), ["\"zstd-dict-\(id)\""])
      XCTAssertEqual(get.header("cache-control"), ["public, max-age=31536000, immutable"])
      XCTAssertEqual(get.header("x-zstd-dictionary-id"), ["\(id)"])
      XCTAssertEqual(get.header("content-length"), ["\(dictionary.bytes.count)"])
      XCTAssertEqual(get.header("accept-ranges"), ["bytes"])
      XCTAssertEqual(get.header("access-control-allow-origin"), ["*"])
      let lastModified = try XCTUnwrap(get.header("last-modified").first)
      XCTAssertTrue(lastModified.hasSuffix(" gmt"), lastModified)
    }
    // The dictionary's ID is bytes 4–7 of the blob, as the Python client reads it.
    XCTAssertEqual(
      dictionary.bytes[4..<8].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.1) << (8 * $1.0) },
      id)

    let head = try request(server.port, "HEAD", dictionaryPath)
    XCTAssertEqual(head.status, 200)
    XCTAssertEqual(head.header("content-length"), ["\(dictionary.bytes.count)"])
    XCTAssertTrue(head.body.isEmpty)

    let cached = try request(
      server.port, "GET", dictionaryPath, "If-None-Match: \"zstd-dict-\(id)\"\r\n")
    XCTAssertEqual(cached.status, 304, cached.head)
    XCTAssertTrue(cached.body.isEmpty)
    XCTAssertEqual(cached.header("etag"), ["\"zstd-dict-\(id)\""])
    XCTAssertEqual(cached.header("content-length"), [])

    let range = try request(server.port, "GET", dictionaryPath, "Range: bytes=0-7\r\n")
    XCTAssertEqual(range.status, 206, range.head)
    XCTAssertEqual(range.body, Array(dictionary.bytes[0..<8]))

    let notInteger = try request(server.port, "GET", dictionaryPath + "?id=")
    XCTAssertEqual(notInteger.status, 400)
    XCTAssertEqual(notInteger.header("content-type"), ["application/json"])
    XCTAssertEqual(
      notInteger.text,
      #"{"error":"InvalidRequest","message":"id must be an integer zstd dictionary ID"}"#)

    let other = try request(server.port, "GET", dictionaryPath + "?id=1612007021")
    XCTAssertEqual(other.status, 404)
    XCTAssertEqual(other.header("content-type"), ["application/json"])
    XCTAssertEqual(
      other.text,
      #"{"error":"DictionaryNotFound","message":"no dictionary with id 1612007021; "#
        + #"current dictionary id is \#(id)"}"#)

    let post = try request(server.port, "POST", dictionaryPath, "Content-Length: 0\r\n")
    XCTAssertEqual(post.status, 405)
    XCTAssertEqual(post.header("content-type"), ["application/json"])
    XCTAssertEqual(post.text, #"{"error":"MethodNotAllowed","message":"expected GET"}"#)

    let preflight = try request(
      server.port, "OPTIONS", dictionaryPath, "Access-Control-Request-Method: GET\r\n")
    XCTAssertEqual(preflight.status, 204)
    XCTAssertEqual(preflight.header("access-control-allow-origin"), ["*"])
  }

  /// A keep-alive connection fetches the dictionary twice, the second time conditionally.
  func testKeepAliveRevalidation() async throws {
    let (server, dictionary) = try await server()
    defer { Task { try? await server.stop() } }
    let fd = try RawSocket.connect(port: server.port)
    defer { close(fd) }
    let get = "GET \(dictionaryPath) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    let conditional =
      "GET \(dictionaryPath) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      + "If-None-Match: \"zstd-dict-\(dictionary.id)\"\r\nConnection: close\r\n\r\n"
    XCTAssertTrue(RawSocket.send(fd, Array((get + conditional).utf8)))
    let (bytes, ended) = RawSocket.readToEnd(fd, timeout: .seconds(10))
    XCTAssertTrue(ended)
    let text = String(decoding: bytes, as: UTF8.self)
    XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
    XCTAssertTrue(bytes.count > dictionary.bytes.count)
    XCTAssertTrue(text.contains("HTTP/1.1 304 Not Modified\r\n"))
    XCTAssertTrue(text.hasSuffix("\r\n\r\n"), "the 304 has no body")
  }

  func testSubscribeEventsRejectionsWithoutUpgrade() async throws {
    let (server, _) = try await server()
    defer { Task { try? await server.stop() } }
    let prefix = "subscribe: invalid options: "
    for (query, status, error, message, reason) in [
      (
        "?x=%zz", 400, "InvalidRequest", prefix + #"invalid URL escape \"%zz\""#, "v2_invalid_query"
      ),
      (
        "?compress=true", 400, "InvalidRequest",
        "compress=true / Socket-Encoding: zstd is the /subscribe (v1) opt-in; this endpoint uses "
          + #"zstdDictionary=\u003cid\u003e with the dictionary from getZstdDictionary"#,
        "v2_v1_compression"
      ),
      (
        "?zstdDictionary=0", 400, "InvalidRequest",
        "zstdDictionary must be a positive integer zstd dictionary ID", "v2_invalid_dictionary_id"
      ),
      (
        "?zstdDictionary=1612007021", 400, "UnknownZstdDictionary",
        "unknown zstd dictionary id 1612007021; current dictionary id is 20261122 "
          + "(fetch it via getZstdDictionary and reconnect)", "v2_unknown_dictionary"
      ),
      (
        "?wantedDids=", 400, "InvalidRequest",
        prefix + "wantedDids is the legacy /subscribe parameter; use dids", "v2_legacy_parameter"
      ),
      (
        "?kinds=commit,account", 400, "InvalidRequest",
        prefix + #"unknown kind \"commit,account\" (valid: commit, identity, account, sync)"#,
        "v2_invalid_kind"
      ),
      (
        "?kinds=identity&collections=app.bsky.feed.post", 400, "InvalidRequest",
        prefix + "collections filter can never apply: kinds excludes commit",
        "v2_collections_without_commit"
      ),
      (
        "?maxMessageSizeBytes=-1", 400, "InvalidRequest",
        prefix + #"invalid maxMessageSizeBytes \"-1\""#, "v2_invalid_max_message_size"
      ),
      (
        "?cursor=-3", 400, "InvalidRequest", "subscribe: invalid cursor: negative value -3",
        "v2_invalid_cursor"
      ),
    ] {
      // Without and with websocket headers alike: validation comes before the upgrade (G5).
      for headers in ["", handshake] {
        let response = try request(server.port, "GET", subscribePath + query, headers)
        XCTAssertEqual(response.status, status, query)
        XCTAssertEqual(response.header("content-type"), ["application/json"], query)
        XCTAssertEqual(
          response.text, #"{"error":"\#(error)","message":"\#(message)"}"#, query)
        XCTAssertEqual(response.header("access-control-allow-origin"), ["*"])
      }
      XCTAssertEqual(
        registry.value(#"contrail_subscribe_rejected_total{reason="\#(reason)"}"#), 2, reason)
    }
    let socketEncoding = try request(
      server.port, "GET", subscribePath, "Socket-Encoding: zstd\r\n")
    XCTAssertEqual(socketEncoding.status, 400)
    XCTAssertTrue(
      socketEncoding.text.hasPrefix(#"{"error":"InvalidRequest","message":"compress=true"#))
  }

  func testValidRequestsThatAreNoHandshake() async throws {
    let (server, _) = try await server()
    defer { Task { try? await server.stop() } }
    let target = subscribePath + "?kinds=commit&cursor=5&zstdDictionary=20261122"

    let plain = try request(server.port, "GET", target)
    XCTAssertEqual(plain.status, 426, plain.head)
    XCTAssertEqual(plain.header("content-type"), ["text/plain; charset=utf-8"])
    XCTAssertEqual(plain.header("upgrade"), ["websocket"])
    XCTAssertEqual(
      plain.text,
      #"WebSocket protocol violation: Connection header "close" does not contain Upgrade"#)

    let noUpgrade = try request(
      server.port, "GET", target, "Upgrade: h2c\r\nConnection: Upgrade\r\n", close: false)
    XCTAssertEqual(noUpgrade.status, 426, noUpgrade.head)
    XCTAssertEqual(
      noUpgrade.text,
      #"WebSocket protocol violation: Upgrade header "h2c" does not contain websocket"#)

    let http10 = try request(server.port, "GET", target, version: "HTTP/1.0")
    XCTAssertEqual(http10.status, 426, http10.head)

    let version = try request(
      server.port, "GET", target,
      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", close: false)
    XCTAssertEqual(version.status, 400, version.head)
    XCTAssertEqual(version.header("sec-websocket-version"), ["13"])
    XCTAssertEqual(version.header("content-type"), ["text/plain; charset=utf-8"])

    let head = try request(server.port, "HEAD", target)
    XCTAssertEqual(head.status, 426, head.head)
    XCTAssertTrue(head.body.isEmpty)

    for method in ["POST", "PUT", "DELETE"] {
      let other = try request(server.port, method, target, "Content-Length: 0\r\n")
      XCTAssertEqual(other.status, 501, method)
      XCTAssertEqual(other.header("content-type"), ["application/json"])
      XCTAssertEqual(
        other.text, #"{"error":"MethodNotImplemented","message":"method not implemented"}"#)
    }
    let preflight = try request(
      server.port, "OPTIONS", subscribePath, "Access-Control-Request-Method: GET\r\n")
    XCTAssertEqual(preflight.status, 204)
    // None of these is a rejected subscription.
    XCTAssertFalse(registry.emitToString().contains("contrail_subscribe_rejected_total{"))
    // HEAD is validated like GET.
    XCTAssertEqual(try request(server.port, "HEAD", subscribePath + "?kinds=").status, 400)
  }

  func testNotReadyIsA503BeforeValidation() async throws {
    let ready = Mutex<String?>("not connected to the relay yet")
    let (server, _) = try await server(readiness: { ready.withLock { $0 } })
    defer { Task { try? await server.stop() } }
    for query in ["", "?kinds=", "?cursor=abc"] {
      let response = try request(server.port, "GET", subscribePath + query)
      XCTAssertEqual(response.status, 503, query)
      XCTAssertEqual(response.header("content-type"), ["application/json"])
      XCTAssertEqual(
        response.text,
        #"{"error":"ServiceUnavailable","message":"service not ready: not connected to the relay yet"}"#
      )
    }
    XCTAssertEqual(
      registry.value(#"contrail_subscribe_refused_total{reason="v2_not_ready"}"#), 3)
    ready.withLock { $0 = nil }
    XCTAssertEqual(try request(server.port, "GET", subscribePath + "?kinds=").status, 400)
  }
}
