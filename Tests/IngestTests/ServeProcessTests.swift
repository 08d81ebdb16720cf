import Compression
import DefaultDictionary
import EventLog
import Events
import Foundation
import RelayFixture
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// `contrail serve` as a separate process: killed with SIGKILL mid-stream and restarted, it
/// resumes after the last stored relay seq with no gap and no duplicate; SIGTERM stops it
/// promptly.
final class ServeProcessTests: XCTestCase {
  private var directory = ""
  private var relayTask: Task<Void, Never>?

  override func tearDown() {
    relayTask?.cancel()
    try? FileManager.default.removeItem(atPath: directory)
  }

  private func serve(_ relayPort: Int) throws -> Process {
    let process = Process()
    process.executableURL = try ContrailCommand.binary()
    process.arguments = [
      "serve", "--relay", "ws://127.0.0.1:\(relayPort)", "--data-dir", directory, "--host",
      "127.0.0.1", "--port", "0", "--fsync-interval", "20ms", "--log-level", "warning",
      "--dictionary", SharedData.defaultDictionaryPath,
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
  }

  /// The last relay seq in the log, read the way `inspect` does (read-only, beside the writer).
  private func storedSeq() -> Int64 {
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .never
    return (try? EventLog(configuration, readOnly: true))?.lastWrittenSeq ?? 0
  }

  func testSIGKILLThenRestartResumesWithoutGapOrDuplicate() async throws {
    directory = TemporaryLog.directory("serve-process")
    let (frames, expected) = IngestEndToEndTests.frames(3_000, seed: 14)
    var configuration = FixtureRelay.Configuration()
    configuration.rate = 1_500
    let relay = FixtureRelay(
      source: FileRelaySource(frames: frames, loop: false), configuration: configuration)
    let (relayPort, task) = try await relay.start()
    relayTask = task

    let first = try serve(relayPort)
    try await waitUntil("some events stored") { storedSeq() >= 800 }
    kill(first.processIdentifier, SIGKILL)
    first.waitUntilExit()
    let atKill = storedSeq()
    XCTAssertLessThan(atKill, expected.last!.0, "killed mid-stream")

    let second = try serve(relayPort)  // no stale lock: the kernel released the first one's
    try await waitUntil("everything stored after the restart") { storedSeq() >= expected.last!.0 }
    let stopping = ContinuousClock.now
    kill(second.processIdentifier, SIGTERM)
    second.waitUntilExit()
    XCTAssertLessThan(ContinuousClock.now - stopping, .seconds(10), "SIGTERM exits within 10 s")
    XCTAssertEqual(second.terminationStatus, 0)

    var logConfiguration = EventLog.Configuration(directory: directory)
    logConfiguration.sync = .never
    let stored = try IngestEndToEndTests.stored(
      try EventLog(logConfiguration, readOnly: true),
      try ZstdDictionary(path: SharedData.defaultDictionaryPath))
    XCTAssertEqual(stored.count, expected.count, "no gap and no duplicate across the kill")
    let mismatch = zip(stored, expected).enumerated().first {
      $0.element.0.0 != $0.element.1.0 || $0.element.0.1 != $0.element.1.1
    }?.offset
    XCTAssertNil(mismatch, "first difference at \(String(describing: mismatch))")
  }
}

/// The binary on its own, as an operator installs it: no repository, no dictionary file.
final class StandaloneBinaryTests: XCTestCase {
  func testTheBuiltInDictionaryIsTheRepositoryFile() throws {
    let file = try XCTUnwrap(SharedData.read(SharedData.defaultDictionaryPath))
    XCTAssertEqual(DefaultDictionary.bytes, file)
    XCTAssertEqual(try ZstdDictionary(bytes: DefaultDictionary.bytes).id, DefaultDictionary.id)
  }

  func testABinaryCopiedAloneServesOfflineWithDefaults() async throws {
    let directory = TemporaryLog.directory("standalone")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let binary = directory + "/contrail"
    try FileManager.default.copyItem(atPath: try ContrailCommand.binary().path, toPath: binary)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    process.arguments = ["serve", "--offline", "--host", "127.0.0.1", "--port", "0"]
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    let text = Mutex("")
    errors.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      text.withLock { $0 += String(decoding: data, as: UTF8.self) }
    }
    try process.run()
    defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    try await waitUntil("serving", timeout: .seconds(30)) {
      text.withLock { $0.contains("serving") }
    }
    let log = text.withLock { $0 }
    XCTAssertTrue(log.contains("id=20261122"), log)
    XCTAssertTrue(log.contains("Jetstream's v1 dictionary"), log)
    let address = try XCTUnwrap(log.firstMatch(of: /address=127\.0\.0\.1:([0-9]+)/))
    let port = try XCTUnwrap(Int(address.1))
    let subscriber = try await TestWebSocketClient.connect(port: port, target: "/subscribe")
    guard case .text(let event)? = try await subscriber.next(timeout: .seconds(20)) else {
      return XCTFail("no event from the standalone server")
    }
    XCTAssertTrue(event.hasPrefix(#"{"did":"#), event)
    XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/data"))
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0)
    errors.fileHandleForReading.readabilityHandler = nil
  }

  func testVersion() throws {
    let result = try ContrailCommand.run(["--version"])
    XCTAssertEqual(result.status, 0)
    XCTAssertEqual(String(decoding: result.stdout, as: UTF8.self), ContrailVersion.string + "\n")
  }

  func testServeHelpNamesTheDictionaryAndTheV1Caveat() throws {
    let help = try ContrailCommand.run(["serve", "--help"])
    let text = String(decoding: help.stdout, as: UTF8.self)
    XCTAssertTrue(text.contains("20261122"), text)
    XCTAssertTrue(text.contains("1612007021"), text)
  }
}

/// `serve`'s settings: flags and `CONTRAIL_*` variables, and a clear error for a bad value.
final class ServeSettingsTests: XCTestCase {
  func testBadValuesAreRefusedWithTheSettingNamed() throws {
    let flag = try ContrailCommand.run(["serve", "--offline", "--port", "abc"])
    XCTAssertNotEqual(flag.status, 0)
    XCTAssertTrue(flag.stderr.contains(#"--port / CONTRAIL_PORT: cannot use "abc""#), flag.stderr)
    let variable = try ContrailCommand.run(
      ["serve", "--offline"], environment: ["CONTRAIL_RETENTION": "soon"])
    XCTAssertNotEqual(variable.status, 0)
    XCTAssertTrue(
      variable.stderr.contains(#"--retention / CONTRAIL_RETENTION: cannot use "soon""#),
      variable.stderr)
    let proxies = try ContrailCommand.run([
      "serve", "--offline", "--trusted-proxies", "10.0.0.0/99",
    ])
    XCTAssertNotEqual(proxies.status, 0)
    XCTAssertTrue(
      proxies.stderr.contains(
        #"--trusted-proxies / CONTRAIL_TRUSTED_PROXIES: cannot use "10.0.0.0/99""#),
      proxies.stderr)
    let relay = try ContrailCommand.run(
      ["serve"], environment: ["CONTRAIL_RELAY": "ftp://example.com"])
    XCTAssertNotEqual(relay.status, 0)
    XCTAssertTrue(relay.stderr.contains("CONTRAIL_RELAY"), relay.stderr)
  }

  /// A variable takes effect, and a flag wins over it: here the data directory.
  func testFlagsWinOverVariables() throws {
    let base = TemporaryLog.directory("settings")
    defer { try? FileManager.default.removeItem(atPath: base) }
    // A data directory that cannot be created makes serve fail fast, naming the directory used.
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: base + "/file", contents: Data())
    let fromVariable = try ContrailCommand.run(
      ["serve", "--offline", "--port", "0"],
      environment: ["CONTRAIL_DATA_DIR": base + "/file/from-variable"])
    XCTAssertNotEqual(fromVariable.status, 0)
    XCTAssertTrue(fromVariable.stderr.contains("from-variable"), fromVariable.stderr)
    let fromFlag = try ContrailCommand.run(
      ["serve", "--offline", "--port", "0", "--data-dir", base + "/file/from-flag"],
      environment: ["CONTRAIL_DATA_DIR": base + "/file/from-variable"])
    XCTAssertNotEqual(fromFlag.status, 0)
    XCTAssertTrue(fromFlag.stderr.contains("from-flag"), fromFlag.stderr)
  }
}
