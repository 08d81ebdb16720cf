import App
import Foundation
import Ingest
import Prometheus
import RelayFixture
import Subscribe
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// `deploy/haproxy.cfg`, unchanged, run by Debian's HAProxy in front of three in-process
/// instances: round-robin over the ones whose `/readyz` answers 200, websockets through it, and
/// `option forwardfor` paired with `--trusted-proxies`.
final class LoadBalancerTests: XCTestCase {
  private var directories: [String] = []
  private var tasks: [Task<Void, Never>] = []

  override func tearDown() {
    for task in tasks { task.cancel() }
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  struct Missing: Error, CustomStringConvertible {
    var description: String {
      "haproxy is not installed: the load balancer test needs it "
        + "(apt-get install haproxy; .ci/run installs it)"
    }
  }

  static let configuration = SharedData.projectRoot + "/deploy/haproxy.cfg"

  /// HAProxy running `deploy/haproxy.cfg` on a free loopback port with `servers` as
  /// `CONTRAIL_LB_SERVER_1…`; nothing else from the environment.
  private func haproxy(_ servers: [String]) async throws -> (Process, Int) {
    guard
      let path = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"].first(
        where: { FileManager.default.isExecutableFile(atPath: $0) })
    else { throw Missing() }
    let port = try RawSocket.freePort()
    var environment = ["CONTRAIL_LB_BIND": "127.0.0.1:\(port)"]
    for (index, server) in servers.enumerated() {
      environment["CONTRAIL_LB_SERVER_\(index + 1)"] = server
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["-db", "-f", Self.configuration]
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    try await waitUntil("haproxy listening on \(port)", timeout: .seconds(20)) {
      guard process.isRunning, let fd = try? RawSocket.connect(port: port) else { return false }
      close(fd)
      return true
    }
    return (process, port)
  }

  private func serve(relayPort: Int, logger: CapturedLog) async throws -> ContrailServer {
    let directory = TemporaryLog.directory("lb")
    directories.append(directory)
    var settings = try ServeSettings.forTests(
      relay: "ws://127.0.0.1:\(relayPort)", dataDirectory: directory)
    settings.trustedProxies = try XCTUnwrap(TrustedProxies("127.0.0.1/32"))
    let contrail = try await ContrailServer.start(
      settings, registry: PrometheusCollectorRegistry(), logger: logger.logger)
    tasks.append(Task { await contrail.run() })
    return contrail
  }

  func testTheShippedConfigBalancesReadyInstancesAndCarriesWebsockets() async throws {
    let (frames, expected) = IngestEndToEndTests.frames(200, seed: 31)
    // A and B follow relays of their own (same frames); C's relay is not there, so C is live
    // (`/healthz`) but never ready (`/readyz` 503).
    var relayPorts: [Int] = []
    for _ in 0..<2 {
      let relay = FixtureRelay(source: FileRelaySource(frames: frames, loop: false))
      let (port, task) = try await relay.start()
      tasks.append(task)
      relayPorts.append(port)
    }
    relayPorts.append(try RawSocket.freePort())
    let logs = [CapturedLog(), CapturedLog(), CapturedLog()]
    var instances: [ContrailServer] = []
    for (port, log) in zip(relayPorts, logs) {
      instances.append(try await serve(relayPort: port, logger: log))
    }
    for instance in instances.prefix(2) {
      try await waitUntil("instance ready") {
        (try? RawHTTP.get(port: instance.port, target: "/readyz").status) == 200
      }
    }
    XCTAssertEqual(try RawHTTP.get(port: instances[2].port, target: "/readyz").status, 503)

    let (proxy, port) = try await haproxy(instances.map { "127.0.0.1:\($0.port)" })
    defer {
      proxy.terminate()
      proxy.waitUntilExit()
    }
    // Which instance answered: `/status.json` names its relay.
    func answeredBy() throws -> Int? {
      let body = try RawHTTP.get(port: port, target: "/status.json").body
      return relayPorts.firstIndex { body.contains("127.0.0.1:\($0)") }
    }
    try await waitUntil("the unready instance is out of rotation", timeout: .seconds(30)) {
      let answers = (0..<4).map { _ in try? answeredBy() }
      return !answers.contains(2) && !answers.contains(nil)
    }
    let answers = try (0..<8).map { _ in try answeredBy() }
    XCTAssertEqual(Set(answers), [0, 1], "only the ready instances answer: \(answers)")
    XCTAssertTrue(
      zip(answers, answers.dropFirst()).allSatisfy { $0 != $1 }, "round-robin: \(answers)")

    // A websocket through the proxy replays and follows like a direct one.
    let subscriber = try await TestWebSocketClient.connect(
      port: port, target: "/subscribe?cursor=0")
    let received = try await receivedInOrder(subscriber, expected)
    XCTAssertEqual(received, expected.count)

    // `option forwardfor` + `--trusted-proxies 127.0.0.1/32`: the instance sees the client.
    let (fd, head) = try RawSocket.handshake(port: port, target: "/subscribe", source: "127.0.0.2")
    defer { close(fd) }
    XCTAssertTrue(head.hasPrefix("HTTP/1.1 101"), head)
    try await waitUntil("the subscriber logged with its own address") {
      logs.contains { !$0.matching("subscriber connected", "address=127.0.0.2").isEmpty }
    }
    for instance in instances { await instance.shutdown() }
  }
}
