import App
import Foundation
import Ingest
import NIOSSL
import Prometheus
import RelayFixture
import SyntheticFirehose
import TestSupport
import XCTest

/// The relay client over TLS: a `wss://localhost` fixture relay with a certificate made for the
/// test (a TLS server name cannot be an IP address) and trusted through `relayCertificates`.
final class RelayTLSTests: XCTestCase {
  private var directory = ""
  private var relayTask: Task<Void, Never>?

  override func tearDown() {
    relayTask?.cancel()
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// A self-signed certificate for `localhost` from the `openssl` command.
  private func certificate(in directory: String) throws -> (cert: String, key: String) {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
      // A failure, not a skip: scripts/setup-deps installs it.
      struct Missing: Error, CustomStringConvertible {
        var description: String {
          "needs /usr/bin/openssl to make a test certificate (apt-get install openssl)"
        }
      }
      throw Missing()
    }
    let cert = directory + "/cert.pem"
    let key = directory + "/key.pem"
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days",
      "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key,
      "-out", cert,
    ]
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0, "openssl req")
    return (cert, key)
  }

  /// A `wss://localhost` fixture relay with a test certificate; returns the port and the cert.
  private func tlsRelay(_ frames: [[UInt8]]) async throws -> (port: Int, cert: String) {
    directory = TemporaryLog.directory("tls")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let (cert, key) = try certificate(in: directory)
    var configuration = FixtureRelay.Configuration()
    configuration.tls = try NIOSSLContext(
      configuration: .makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))))
    let relay = FixtureRelay(
      source: FileRelaySource(frames: frames, loop: false), configuration: configuration)
    let (relayPort, task) = try await relay.start()
    relayTask = task
    return (relayPort, cert)
  }

  /// `tail` over TLS: an untrusted certificate is one clear line (no library dump); `--ca` or
  /// `SSL_CERT_FILE` make it trusted.
  func testTailTrustsAPrivateCAAndSaysWhyNot() async throws {
    let (frames, _) = IngestEndToEndTests.frames(20, seed: 4)
    let (port, cert) = try await tlsRelay(frames)
    let url = "wss://localhost:\(port)/xrpc/com.atproto.sync.subscribeRepos"
    let untrusted = try ContrailCommand.run(["tail", url, "--limit", "1"])
    XCTAssertNotEqual(untrusted.status, 0)
    XCTAssertTrue(
      untrusted.stderr.contains(
        "cannot connect to localhost:\(port): its certificate is not trusted"),
      untrusted.stderr)
    XCTAssertFalse(untrusted.stderr.contains("BoringSSL"), untrusted.stderr)
    XCTAssertLessThanOrEqual(untrusted.stderr.split(separator: "\n").count, 2, untrusted.stderr)
    // Trusted: TLS succeeds and the HTTP exchange happens (the relay has no /subscribe, so the
    // upgrade is refused: a plain answer, not a certificate error).
    for (extra, environment) in [(["--ca", cert], [:]), ([], ["SSL_CERT_FILE": cert])] {
      let trusted = try ContrailCommand.run(
        ["tail", url, "--limit", "1"] + extra, environment: environment)
      XCTAssertTrue(
        trusted.stderr.contains("did not accept the websocket upgrade"), trusted.stderr)
      XCTAssertFalse(trusted.stderr.contains("not trusted"), trusted.stderr)
    }
  }

  func testIngestsFromAWSSRelay() async throws {
    let (frames, expected) = IngestEndToEndTests.frames(200, seed: 3)
    let (relayPort, cert) = try await tlsRelay(frames)

    var settings = try ServeSettings.forTests(
      relay: "wss://localhost:\(relayPort)", dataDirectory: directory + "/data")
    settings.relayCertificates = cert
    let contrail = try await ContrailServer.start(
      settings, registry: PrometheusCollectorRegistry(), logger: quietLogger)
    let running = Task { await contrail.run() }
    let log = contrail.log
    try await waitUntil("everything arrives over TLS", timeout: .seconds(30)) {
      (log.lastWrittenSeq ?? 0) >= expected.last!.0
    }
    XCTAssertEqual(log.lastWrittenSeq, expected.last!.0)
    XCTAssertEqual(log.stats.events, expected.count)
    await contrail.shutdown()
    await running.value
  }
}

final class RelayEndpointTests: XCTestCase {
  func testForms() throws {
    let cases: [(String, String)] = [
      ("bsky.network", "wss://bsky.network:443/xrpc/com.atproto.sync.subscribeRepos"),
      ("wss://bsky.network", "wss://bsky.network:443/xrpc/com.atproto.sync.subscribeRepos"),
      ("https://relay.example/", "wss://relay.example:443/xrpc/com.atproto.sync.subscribeRepos"),
      ("http://127.0.0.1:2470", "ws://127.0.0.1:2470/xrpc/com.atproto.sync.subscribeRepos"),
      ("ws://localhost:8080/custom/path", "ws://localhost:8080/custom/path"),
      ("wss://h?x=1", "wss://h:443/xrpc/com.atproto.sync.subscribeRepos?x=1"),
      ("ws://[::1]:9000", "ws://[::1]:9000/xrpc/com.atproto.sync.subscribeRepos"),
      // Loopback without a scheme is a local plain server.
      ("127.0.0.1:6008", "ws://127.0.0.1:6008/xrpc/com.atproto.sync.subscribeRepos"),
      ("localhost", "ws://localhost:80/xrpc/com.atproto.sync.subscribeRepos"),
      ("[::1]:7", "ws://[::1]:7/xrpc/com.atproto.sync.subscribeRepos"),
      ("wss://127.0.0.1:6008", "wss://127.0.0.1:6008/xrpc/com.atproto.sync.subscribeRepos"),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(try RelayEndpoint(text).description, expected, text)
    }
    for bad in ["ftp://x", "wss://", "wss://h:0", "wss://h:99999", "wss://h:abc"] {
      XCTAssertThrowsError(try RelayEndpoint(bad), bad)
    }
    let endpoint = try RelayEndpoint("wss://h/p?x=1")
    XCTAssertEqual(endpoint.target(cursor: 42), "/p?x=1&cursor=42")
    XCTAssertEqual(
      try RelayEndpoint("h").target(cursor: 7), RelayEndpoint.subscribePath + "?cursor=7")
    XCTAssertEqual(try RelayEndpoint("h").target(cursor: nil), RelayEndpoint.subscribePath)
  }
}
