import ArgumentParser
import Broadcast
import Compression
import EventLog
import Events
import Firehose
import Foundation
import Ingest
import Logging
import Metrics
import NIOCore
import RelayFixture
import SyntheticFirehose

/// `contrail bench ingest`: the ingest pipeline (translate → compress → log append with fsync
/// every 100 ms → ring publish) on frames held in memory, against translate + compress alone in
/// the same run; then the RSS of `contrail serve` idle and under load.
struct BenchIngest: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ingest",
    abstract: "Ingest pipeline events/s vs translate + compress alone; serve RSS idle and busy.")

  @Option(help: "Frames per run (the input repeats under new seqs to reach this).")
  var frames = 50_000

  @Option(help: "Trials; the best of each measurement is reported.")
  var trials = 3

  @Option(help: "The dictionary the events are compressed with.")
  var dictionary = "Dictionaries/contrail-default.zdict"

  @Option(help: "zstd level (the C reference compares at 3).")
  var level: Int32 = EventCompressor.defaultLevel

  @Option(help: "Frames to run: capture (../shared), generated, or both.")
  var input = "both"

  @Flag(help: "Skip the `serve` RSS measurements.")
  var noRss = false

  func validate() throws {
    guard ["capture", "generated", "both"].contains(input) else {
      throw ValidationError("--input is capture, generated or both")
    }
  }

  func run() async throws {
    let dictionary = try ZstdDictionary(path: dictionary)
    let capture = "../shared/corpus/jetstream-v1-capture/frames.bin.zst"
    var inputs: [(String, [[UInt8]])] = []  // released once converted
    if input != "generated", FileManager.default.fileExists(atPath: capture) {
      let source = FileRelaySource(frames: try FramesFile.read(path: capture).frames, loop: true)
      inputs.append(
        ("real capture, repeated", (0..<frames).compactMap { source.frame(at: $0)?.bytes }))
    } else if input != "generated" {
      print("(../shared capture absent: generated frames only)")
    }
    if input != "capture" {
      var generator = FirehoseGenerator(seed: 3)
      inputs.append(("generated", (0..<frames).map { _ in generator.next() }))
    }
    print("zstd level \(level)")

    for (name, frames) in inputs {
      let input = frames.map { ByteBuffer(bytes: $0) }  // as the socket hands them over
      var ingestBest = Double.infinity
      var translateBest = Double.infinity
      var compressBest = Double.infinity
      var eventCount = 0
      for _ in 0..<trials {
        // Baselines, same frames, same process: translate alone, then compress alone.
        let translator = Translator()
        var events: [Event] = []
        translateBest = min(
          translateBest,
          seconds {
            for frame in input {
              frame.withUnsafeReadableBytes { _ = translator.translate($0, into: &events) }
            }
          })
        let compressor = try EventCompressor(dictionary: dictionary, level: level)
        compressBest = min(
          compressBest,
          seconds {
            for event in events { _ = try? compressor.compress(event.json) }
          })
        eventCount = events.count
        events = []
        ingestBest = min(ingestBest, try await ingest(input, dictionary))
      }
      let n = Double(eventCount)
      let ratio = (ingestBest / n) / (translateBest / n + compressBest / n)
      print(
        "\(name): \(input.count) frames, \(eventCount) events; ingest \(Int(n / ingestBest)) events/s "
          + "(\(format3(ingestBest / n * 1e6)) µs/event) vs translate \(format3(translateBest / n * 1e6)) "
          + "+ compress \(format3(compressBest / n * 1e6)) µs/event: overhead ratio \(format3(ratio))"
      )
    }
    if !noRss { try await residentSizes() }
  }

  /// One pipeline run over `input`, submitted 64 frames at a time like socket reads.
  private func ingest(_ buffers: [ByteBuffer], _ dictionary: ZstdDictionary) async throws -> Double
  {
    let directory =
      FileManager.default.temporaryDirectory.path + "/contrail-bench-ingest-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .interval(milliseconds: 100)
    let log = try EventLog(configuration)
    let ring = LiveRing()
    let pipeline = IngestPipeline(
      store: try EventStore(log: log, ring: ring, dictionary: dictionary, level: level),
      metrics: NOOPMetricsHandler.instance,
      logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
    let started = ContinuousClock.now
    for start in stride(from: 0, to: buffers.count, by: 64) {
      pipeline.submit(Array(buffers[start..<min(start + 64, buffers.count)]))
    }
    _ = await pipeline.settle()
    try log.sync()
    let elapsed = ContinuousClock.now - started
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
  }

  private func seconds(_ body: () -> Void) -> Double {
    let elapsed = ContinuousClock().measure(body)
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
  }

  /// RSS of `contrail serve` processes: idle (a relay that is not there) and busy (offline at
  /// 2,000 frames/s with 10 subscribers), each 10 s after start.
  private func residentSizes() async throws {
    for (name, arguments, subscribers) in [
      ("idle (relay unreachable, no subscribers)", ["--relay", "ws://127.0.0.1:1"], 0),
      (
        "busy (offline relay at 2,000 frames/s, 10 subscribers)",
        ["--offline", "--offline-rate", "2000"], 10
      ),
    ] {
      let directory =
        FileManager.default.temporaryDirectory.path + "/contrail-bench-rss-\(getpid())"
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
      let port = 46_000 + Int(getpid() % 1000)
      process.arguments =
        [
          "serve", "--host", "127.0.0.1", "--port", String(port), "--data-dir", directory,
          "--log-level", "error",
        ] + arguments
      try process.run()
      try await Task.sleep(for: .seconds(2))
      var client: LoadProcess? = nil
      if subscribers > 0 {
        client = try await LoadProcess.start(
          port: port, connections: subscribers, target: "/subscribe", expect: 0)
      }
      try await Task.sleep(for: .seconds(8))
      let rss = Self.resident(process.processIdentifier, "VmRSS:")
      let anonymous = Self.resident(process.processIdentifier, "RssAnon:")
      client?.stop()
      process.terminate()
      process.waitUntilExit()
      print(
        "serve RSS \(name): \(rss >> 20) MB (\(anonymous >> 20) MB anonymous; the rest is "
          + "mapped library files)")
    }
  }

  /// A `/proc/PID/status` size field (`VmRSS:`, `RssAnon:`) in bytes.
  static func resident(_ pid: Int32, _ field: String) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
      let kb = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kb << 10
  }
}
