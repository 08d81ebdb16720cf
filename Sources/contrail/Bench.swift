import ArgumentParser
import Events
import Firehose
import SyntheticFirehose

/// `contrail bench`: throughput benchmarks over data held in memory. Use a release build.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a benchmark (release builds only give meaningful numbers).",
    subcommands: [
      BenchTranslate.self, BenchCompress.self, BenchLog.self, BenchFanout.self, BenchIngest.self,
      BenchLargeCommit.self, BenchLatency.self, BenchEdge.self,
    ])
}

/// Decode + JSON throughput of the translator on one thread, with a libcbor token-walk
/// baseline measured in the same run (the machine is shared: compare ratios, not times).
struct BenchTranslate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "translate",
    abstract: "Frames/s, events/s and MB/s of decode + JSON over frames held in memory.")

  @Argument(help: "A frames file (default: the real capture in ../shared, else the fixture).")
  var input: String?

  @Option(help: "Passes over each window of frames per trial.")
  var passes: Int = 200

  @Option(help: "Trials; the best and the median are reported.")
  var trials: Int = 5

  @Option(help: "Process the frames in consecutive windows of this many (default: all at once).")
  var window: Int?

  @Flag(help: "Skip the token-walk baseline (for profiling the translator alone).")
  var noBaseline = false

  func validate() throws {
    guard passes > 0, trials > 0, (window ?? 1) > 0 else {
      throw ValidationError("--passes, --trials and --window must be positive")
    }
  }

  func run() throws {
    let path = input ?? Self.defaultInput()
    let frames = try FramesFile.read(path: path).frames
    guard !frames.isEmpty else { throw CLIError("\(path) holds no frames") }
    let bytes = frames.reduce(0) { $0 + $1.count }
    let size = window ?? frames.count
    let windows = stride(from: 0, to: frames.count, by: size).map {
      Array(frames[$0..<min($0 + size, frames.count)])
    }
    print(
      "input: \(path) (\(frames.count) frames, \(bytes) bytes); windows of \(size) frames, "
        + "\(passes) passes each, \(trials) trials, 1 thread")

    let translator = Translator()
    var events: [Event] = []
    let translate = measure {
      var count = 0
      for frame in $0 {
        events.removeAll(keepingCapacity: true)
        translator.translate(frame, into: &events)
        count += events.count
      }
      return count
    }
    let eventCount = windows.reduce(0) { total, window in
      var events: [Event] = []
      let counter = Translator()
      for frame in window { counter.translate(frame, into: &events) }
      return total + events.count
    }
    func report(_ name: String, _ seconds: Double) {
      let perPass = seconds / Double(passes)
      print(
        "\(name): \(Int(Double(frames.count) / perPass)) frames/s, "
          + "\(Int(Double(eventCount) / perPass)) events/s, \(Int(Double(bytes) / perPass / 1e6)) MB/s, "
          + "\(format3(perPass / Double(eventCount) * 1e6)) µs/event")
    }
    report("translate best  ", translate.best)
    report("translate median", translate.median)
    guard !noBaseline else { return }
    // Baseline: walk every CBOR token of each frame and of every CAR block, doing nothing else.
    let walk = measure { window in
      var tokens = 0
      for frame in window { frame.withUnsafeBytes { tokens &+= Self.walk($0) } }
      return tokens
    }
    report("token walk best ", walk.best)
    print("ratio translate / token walk (best): \(format3(translate.best / walk.best))")
    print("translated \(eventCount) events per pass; drops \(translator.counters.totalDrops)")

    func measure(_ body: ([[UInt8]]) -> Int) -> (best: Double, median: Double) {
      var times: [Double] = []
      var sink = 0
      let clock = ContinuousClock()
      for _ in 0..<trials {
        var total = Duration.zero
        for window in windows {
          sink &+= body(window)  // warm-up pass
          total += clock.measure {
            for _ in 0..<passes { sink &+= body(window) }
          }
        }
        times.append(
          Double(total.components.seconds) + Double(total.components.attoseconds) * 1e-18)
      }
      if sink == Int.min { print(sink) }  // keep the work observable
      times.sort()
      return (times[0], times[times.count / 2])
    }
  }

  static func defaultInput() -> String {
    let capture = "../shared/corpus/jetstream-v1-capture/frames.bin.zst"
    return fileExists(capture) ? capture : "Fixtures/synthetic-2000.frames.zst"
  }

  /// Counts the tokens of a frame's header and body, and of every block in its CAR.
  static func walk(_ frame: UnsafeRawBufferPointer) -> Int {
    var reader = CBORReader(frame)
    var tokens = 0
    while !reader.isAtEnd {
      switch reader.next() {
      case .invalid: return tokens
      case .bytes(let b) where b.count > 64:
        guard let car = CARFile(b) else { continue }
        for block in car.blocks {
          var inner = CBORReader(block.data)
          while !inner.isAtEnd {
            if case .invalid = inner.next() { break }
            tokens += 1
          }
        }
      default: tokens += 1
      }
    }
    return tokens
  }
}

func format3(_ value: Double) -> String {
  "\((value * 1000).rounded() / 1000)"
}
