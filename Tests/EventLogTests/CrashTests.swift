import Compression
import EventLog
import Events
import Foundation
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A child process appends as fast as it can and is killed with SIGKILL at 20 random moments;
/// after each kill the log reopens to exactly a prefix of the stream, and the next child resumes
/// after the last stored seq with nothing lost or stored twice.
final class CrashTests: XCTestCase {
  func testSurvivesSIGKILLAtTwentyRandomInstants() throws {
    let binary = try ContrailCommand.binary()
    let dictionaryPath = SharedData.defaultDictionaryPath
    let directory = LogFixtures.directory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    // The stream the writer produces, computed the same way.
    let expected = try LogFixtures.records(
      frames: 5_000, seed: 5, start: FirehoseGenerator.defaultStart)

    var random = SeededRandom(seed: 2_026)
    var stored: [LogRecord] = []
    for round in 0..<20 {
      let child = Process()
      child.executableURL = binary
      child.arguments = [
        "log-writer", directory, "--dictionary", dictionaryPath, "--seed", "5", "--frames", "5000",
      ]
      try child.run()
      // Kill once the log has grown by a random amount: somewhere mid-stream, often mid-batch.
      let target = Self.size(directory) + 2_000 + random.below(38_000)
      let deadline = ContinuousClock.now + .seconds(60)
      while Self.size(directory) < target && child.isRunning && ContinuousClock.now < deadline {
        usleep(2_000)  // polling the condition, bounded by the deadline
      }
      XCTAssertTrue(child.isRunning, "round \(round): the writer stopped before it was killed")
      kill(child.processIdentifier, SIGKILL)
      child.waitUntilExit()

      var configuration = EventLog.Configuration(directory: directory)
      configuration.sync = .never
      configuration.segmentMaxBytes = 256 << 10
      let log = try EventLog(configuration)
      let recovered = LogFixtures.readAll(log.reader(from: nil))
      XCTAssertGreaterThan(recovered.count, stored.count, "round \(round): the log grew")
      XCTAssertTrue(
        recovered.count <= expected.count && recovered == Array(expected.prefix(recovered.count)),
        "round \(round): the log is exactly a prefix of the stream (nothing lost, nothing twice)")
      XCTAssertEqual(log.lastDurableSeq, recovered.last?.seq, "round \(round)")
      XCTAssertTrue(
        zip(recovered, recovered.dropFirst()).allSatisfy {
          $0.seq <= $1.seq && $0.timeUS < $1.timeUS
        })
      stored = recovered
      try log.close()
    }
    // Every stored event decodes to its JSON.
    let decompressor = try EventDecompressor(dictionary: try ZstdDictionary(path: dictionaryPath))
    for record in stored {
      let json = String(decoding: try decompressor.decompress(record.payload), as: UTF8.self)
      XCTAssertTrue(json.hasPrefix(#"{"did":"\#(record.did)","time_us":\#(record.timeUS),"#), json)
    }
  }

  static func size(_ directory: String) -> Int {
    let segments = directory + "/segments"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: segments)) ?? []
    return names.reduce(0) { total, name in
      total
        + ((try? FileManager.default.attributesOfItem(atPath: segments + "/" + name)[.size] as? Int)
          ?? 0)
    }
  }
}
