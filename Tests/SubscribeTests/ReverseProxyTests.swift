import Broadcast
import EventLog
import Foundation
import Subscribe
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Which client a request behind a trusted reverse proxy comes from: the rules, and Debian's
/// HAProxy in front of a real server.
final class ReverseProxyTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testForwardedAddressResolution() throws {
    let proxies = try XCTUnwrap(TrustedProxies("10.0.0.0/8,::1"))
    func client(_ peer: String, _ headers: [(String, String)]) -> String {
      proxies.client(peer: peer, headers: .init(headers))
    }
    XCTAssertEqual(client("192.0.2.1", [("X-Forwarded-For", "1.2.3.4")]), "192.0.2.1")
    XCTAssertEqual(client("10.1.1.1", [("X-Forwarded-For", "1.2.3.4")]), "1.2.3.4")
    // Right-most untrusted: a client-supplied left part is not believed.
    XCTAssertEqual(
      client("10.1.1.1", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.9.9.9")]), "1.2.3.4")
    XCTAssertEqual(
      client("10.1.1.1", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")]),
      "1.2.3.4")
    XCTAssertEqual(client("::1", [("X-Real-IP", "1.2.3.4")]), "1.2.3.4")
    XCTAssertEqual(client("10.1.1.1", [("X-Forwarded-For", "garbage")]), "10.1.1.1")
    XCTAssertEqual(client("::ffff:10.0.0.5", [("X-Forwarded-For", "2001:DB8::1")]), "2001:db8::1")
    XCTAssertNil(TrustedProxies("10.0.0.0/33"))
    XCTAssertNil(TrustedProxies("nonsense"))
  }

  /// HAProxy on 127.0.0.1 adds `X-Forwarded-For` for clients connecting from 127.0.0.2, .3 and
  /// .4; with only the proxy trusted and one connection per address, all three are accepted, a
  /// second connection from 127.0.0.2 gets 429, and a client claiming to be 127.0.0.2 in its own
  /// header is judged by its real address. Events flow through the proxy.
  func testPerAddressLimitsThroughHAProxy() async throws {
    let stream = try SyntheticStream(frames: 40, seed: 5, start: 1_000_000)
    let log = try TemporaryLog.open("haproxy", directories: &directories)
    let proxies = try XCTUnwrap(TrustedProxies("127.0.0.1/32"))
    let server = try await TestServer.start(stream, log: log, ringCapacity: 10_000) {
      $0.trustedProxies = proxies
      $0.limits.maxConnectionsPerIP = 1
    }
    let scratch = TemporaryLog.directory("haproxy")
    directories.append(scratch)
    let proxy = try await HAProxy.start(backendPort: server.port, scratch: scratch)
    var sockets: [Int32] = []
    defer {
      for fd in sockets { close(fd) }
      proxy.stop()
    }

    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
      let (fd, head) = try RawSocket.handshake(
        port: proxy.port, target: "/subscribe?cursor=1", source: source)
      sockets.append(fd)
      XCTAssertTrue(head.hasPrefix("HTTP/1.1 101"), "\(source) through the proxy: \(head)")
    }
    let (repeated, refusal) = try RawSocket.handshake(
      port: proxy.port, target: "/subscribe", source: "127.0.0.2")
    sockets.append(repeated)
    XCTAssertTrue(refusal.hasPrefix("HTTP/1.1 429"), "a second client from 127.0.0.2: \(refusal)")
    let (spoofing, spoofed) = try RawSocket.handshake(
      port: proxy.port, target: "/subscribe", headers: [("X-Forwarded-For", "127.0.0.2")],
      source: "127.0.0.5")
    sockets.append(spoofing)
    XCTAssertTrue(spoofed.hasPrefix("HTTP/1.1 101"), "a forged header is not believed: \(spoofed)")

    // The replay (cursor=1) reaches the first client through the proxy: a text frame per event.
    let did = Array(#""did":"\#(stream.events[0].did)""#.utf8)
    let (bytes, _) = RawSocket.readToEnd(sockets[0], timeout: .seconds(10)) { bytes in
      bytes.count >= did.count
        && (0...(bytes.count - did.count)).contains {
          bytes[$0..<($0 + did.count)].elementsEqual(did)
        }
    }
    XCTAssertEqual(bytes.first, 0x81, "a text frame arrives through the proxy")
    XCTAssertTrue(
      String(decoding: bytes, as: UTF8.self).contains(String(decoding: did, as: UTF8.self)),
      "the first event arrives through the proxy")
    try await server.stop()
  }
}

/// Debian's `haproxy` in HTTP mode on a free loopback port, forwarding to `backendPort` with
/// `option forwardfor`; killed by `stop()`.
struct HAProxy {
  struct Missing: Error, CustomStringConvertible {
    var description: String {
      "haproxy is not installed: the reverse proxy test needs it "
        + "(apt-get install haproxy; .ci/run installs it)"
    }
  }

  let port: Int
  let process: Process

  static func start(backendPort: Int, scratch: String) async throws -> HAProxy {
    guard
      let path = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"].first(
        where: { FileManager.default.isExecutableFile(atPath: $0) })
    else { throw Missing() }
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    let port = try RawSocket.freePort()
    let configuration = """
      global
        maxconn 64
      defaults
        mode http
        timeout connect 5s
        timeout client 30s
        timeout server 30s
        timeout tunnel 60s
      frontend edge
        bind 127.0.0.1:\(port)
        option forwardfor
        default_backend contrail
      backend contrail
        server one 127.0.0.1:\(backendPort)

      """
    let file = scratch + "/haproxy.cfg"
    try configuration.write(toFile: file, atomically: true, encoding: .utf8)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["-db", "-f", file]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let proxy = HAProxy(port: port, process: process)
    do {
      try await waitUntil("haproxy listening on \(port)", timeout: .seconds(20)) {
        guard process.isRunning, let fd = try? RawSocket.connect(port: port) else { return false }
        close(fd)
        return true
      }
    } catch {
      proxy.stop()
      throw error
    }
    return proxy
  }

  func stop() {
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
  }
}
