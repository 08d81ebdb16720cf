import EventLog
import Events
import Foundation
import Prometheus
import Subscribe
import TestSupport
import XCTest

/// PyPI `atproto` 0.0.73's `AsyncJetstreamClient`, unmodified, against a real server on
/// 127.0.0.1 (PROTOCOL §12, PROTOCOL-v2 §7): with its defaults (compression on, the dictionary
/// fetched from `getZstdDictionary` by the client itself) and kinds commit+identity+account, it
/// receives every event of a generated stream from `cursor=1` with the v1 events' records, and
/// resumes from a mid-stream seq. `scripts/v2-client.py` drives it; `scripts/setup-deps --tests`
/// installs it in `.build/python-v2`.
final class PythonV2ClientTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()
  /// Event times like the live network's (≥ 10^15 µs, so a time cursor is told from a seq).
  private static let base: Int64 = 1_700_000_000_000_000

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testTheAtprotoClientReceivesEveryEventAndResumesMidStream() async throws {
    let python = try PythonV2Client.find()
    let stream = try SyntheticStream(frames: 1_500, seed: 61, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    let kinds = Dictionary(grouping: stream.events, by: \.kind).mapValues(\.count)
    XCTAssertNil(kinds[.sync], "no #sync: it would stop the client (PROTOCOL-v2 G1)")
    for kind in [EventKind.commit, .identity, .account] {
      XCTAssertGreaterThan(kinds[kind] ?? 0, 0, "the stream has \(kind.label) events")
    }
    let log = try TemporaryLog.open("python-v2", directories: &directories)
    let server = try await TestServer.start(stream, log: log, metrics: registry)
    let scratch = TemporaryLog.directory("python-v2-client")
    directories.append(scratch)
    do {
      // Every event, from seq 1.
      let all = try await python.run(port: server.port, cursor: 1, count: total, scratch: scratch)
      XCTAssertEqual(all.events.map(\.seq), Array(1...total), "seqs 1…\(total) in order")
      for (index, received) in all.events.enumerated() {
        try check(received, stream.events[index], seq: index + 1)
      }
      try checkCompressed(all, events: total, dictionary: stream.dictionary.id)

      // Resumed from a mid-stream seq: exactly that seq through the last.
      let resume = total / 2 + 17
      let tail = try await python.run(
        port: server.port, cursor: resume, count: total - resume + 1, scratch: scratch)
      XCTAssertEqual(tail.events.map(\.seq), Array(resume...total), "seqs \(resume)…\(total)")
      for received in tail.events {
        try check(received, stream.events[received.seq - 1], seq: received.seq)
      }
      try checkCompressed(tail, events: total - resume + 1, dictionary: stream.dictionary.id)

      // The server sent every event to both as zstd frames, and none as text.
      let sent = Double(total + total - resume + 1)
      try await waitUntil("the server counts \(sent) zstd events sent", timeout: .seconds(10)) {
        self.registry.value(#"contrail_events_sent_total{compression="zstd"}"#) == sent
      }
      XCTAssertEqual(registry.value(#"contrail_events_sent_total{compression="none"}"#), 0)
      try await waitUntil("both clients gone", timeout: .seconds(10)) {
        server.subscriberCount == 0
      }
    } catch {
      try await server.stop()
      throw error
    }
    try await server.stop()
  }

  /// What the client delivered for an event equals the v1 event: kind, DID, the witness time,
  /// and the commit's fields and record or the identity/account object (as parsed JSON).
  private func check(_ received: PythonV2Client.Line, _ event: Event, seq: Int) throws {
    let v1 = try JSON.parse(event.json)
    XCTAssertEqual(received.seq, seq)
    XCTAssertEqual(received.kind, event.kind.label, "seq \(seq)")
    XCTAssertEqual(received.fields["did"], .string(event.did), "seq \(seq)")
    XCTAssertEqual(received.fields["time"], .string(V2Frame.time(event.timeUS)), "seq \(seq)")
    switch event.kind {
    case .commit:
      let commit = try XCTUnwrap(v1["commit"], "seq \(seq)")
      XCTAssertEqual(received.fields["collection"], .string(event.collection), "seq \(seq)")
      for key in ["operation", "collection", "rkey", "rev"] {
        XCTAssertEqual(received.fields[key], commit[key], "seq \(seq): \(key)")
      }
      // A delete has neither; the client's model gives null for both.
      XCTAssertEqual(received.fields["cid"], commit[optional: "cid"], "seq \(seq): cid")
      XCTAssertEqual(received.fields["record"], commit[optional: "record"], "seq \(seq): record")
    case .identity, .account:
      let key = event.kind.label
      XCTAssertEqual(received.fields[key], v1[key], "seq \(seq): \(key)")
    default:
      XCTFail("seq \(seq): a \(event.kind.label) event in the stream")
    }
  }

  /// The client fetched the dictionary, asked for zstd with its ID on its one connection, and
  /// received exactly one binary frame per event and no text frame.
  private func checkCompressed(_ run: PythonV2Client.Run, events: Int, dictionary: UInt32) throws {
    XCTAssertEqual(run.summary["compressed"], .bool(true), "the client says it is compressed")
    guard case .array(let requests)? = run.summary["requests"], requests.count == 1,
      case .string(let request) = requests[0]
    else { return XCTFail("one connection: \(run.summary)") }
    XCTAssertTrue(request.contains("zstdDictionary=\(dictionary)"), request)
    XCTAssertTrue(request.contains("kinds=commit&kinds=identity&kinds=account"), request)
    XCTAssertEqual(run.summary["statuses"], .array([.number(101)]))
    XCTAssertEqual(run.summary["binaryFrames"], .number(Double(events)), "one zstd frame an event")
    XCTAssertEqual(run.summary["textFrames"], .number(0), "no text frame")
    XCTAssertTrue(run.infos.isEmpty, "no #info for a seq cursor: \(run.infos)")
  }
}

/// `scripts/v2-client.py` under the venv `scripts/setup-deps --tests` makes in
/// `.build/python-v2`, with PyPI `atproto` 0.0.73 in it.
struct PythonV2Client {
  struct Missing: Error, CustomStringConvertible {
    let path: String
    var description: String {
      "the atproto Python client is not installed (no \(path)): the v2 client test needs it "
        + "(scripts/setup-deps --tests makes the venv and pip-installs atproto==0.0.73; "
        + ".ci/run and scripts/test run it)"
    }
  }

  struct Failed: Error, CustomStringConvertible {
    let description: String
  }

  /// One event (or `#info`) the client delivered, as the script wrote it.
  struct Line {
    let seq: Int
    let kind: String
    let fields: JSON
  }

  struct Run {
    let events: [Line]
    let infos: [JSON]
    let summary: JSON
  }

  static let venv = SharedData.projectRoot + "/.build/python-v2"
  static let script = SharedData.projectRoot + "/scripts/v2-client.py"

  let python: String

  static func find() throws -> PythonV2Client {
    let python = venv + "/bin/python3"
    guard FileManager.default.isExecutableFile(atPath: python) else {
      throw Missing(path: python)
    }
    return PythonV2Client(python: python)
  }

  /// Runs the client from `cursor` until it has `count` events (the script gives up after
  /// 60 s, and is killed after 90).
  func run(port: Int, cursor: Int, count: Int, scratch: String) async throws -> Run {
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    let outPath = scratch + "/stdout-\(cursor)"
    let errPath = scratch + "/stderr-\(cursor)"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = [
      Self.script, "--uri", "ws://127.0.0.1:\(port)/xrpc", "--cursor", "\(cursor)",
      "--count", "\(count)", "--timeout", "60",
    ]
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try process.run()
    do {
      try await waitUntil("the Python client (cursor \(cursor))", timeout: .seconds(90)) {
        !process.isRunning
      }
    } catch {
      process.terminate()
      process.waitUntilExit()
      throw error
    }
    let stdout = FileManager.default.contents(atPath: outPath) ?? Data()
    let stderr = String(
      decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
    guard process.terminationStatus == 0 else {
      let hint =
        stderr.contains("ModuleNotFoundError")
        ? " (scripts/setup-deps --tests reinstalls the venv)" : ""
      let last = stdout.split(separator: UInt8(ascii: "\n")).last.map {
        String(decoding: $0, as: UTF8.self)
      }
      throw Failed(
        description: "the Python client (cursor \(cursor)) exited with "
          + "\(process.terminationStatus)\(hint): \(stderr) \(last ?? "(no output)")")
    }
    var events: [Line] = []
    var infos: [JSON] = []
    var summary: JSON?
    for line in stdout.split(separator: UInt8(ascii: "\n")) {
      let value = try JSON.parse(Array(line))
      if let found = value["summary"] {
        summary = found
      } else if value["kind"] == .string("info") {
        infos.append(value)
      } else {
        guard case .number(let seq) = value["seq"], case .string(let kind) = value["kind"] else {
          throw Failed(description: "a line without seq or kind: \(value)")
        }
        events.append(Line(seq: Int(seq), kind: kind, fields: value))
      }
    }
    guard let summary else {
      throw Failed(description: "no summary line from the Python client: \(stderr)")
    }
    return Run(events: events, infos: infos, summary: summary)
  }
}

/// A parsed JSON value, compared as values (object key order does not matter; true is not 1).
indirect enum JSON: Equatable, Decodable, CustomStringConvertible {
  case object([String: JSON])
  case array([JSON])
  case string(String)
  case number(Double)
  case bool(Bool)
  case null

  init(from decoder: Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSON].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSON].self))
    }
  }

  static func parse(_ bytes: [UInt8]) throws -> JSON {
    try JSONDecoder().decode(JSON.self, from: Data(bytes))
  }

  /// The member `key` of an object; nil when absent or not an object.
  subscript(key: String) -> JSON? {
    if case .object(let members) = self { return members[key] }
    return nil
  }

  /// The member `key` of an object, null when absent.
  subscript(optional key: String) -> JSON {
    self[key] ?? .null
  }

  var description: String {
    switch self {
    case .object(let members):
      "{"
        + members.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(
          separator: ",") + "}"
    case .array(let items): "[" + items.map(\.description).joined(separator: ",") + "]"
    case .string(let text): "\"\(text)\""
    case .number(let number): "\(number)"
    case .bool(let flag): "\(flag)"
    case .null: "null"
    }
  }
}
