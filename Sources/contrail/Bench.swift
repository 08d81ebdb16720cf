import ArgumentParser
import Events
import Firehose
import SyntheticFirehose

/// `contrail bench`: throughput benchmarks over data held in memory. Use a release build.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a benchmark (release builds only give meaningful numbers).",
    subcommands: [BenchTranslate.self])
}

/// Decode + JSON throughput of the translator on one thread, with a token-walk baseline
/// measured in the same run.
struct BenchTranslate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "translate",
    abstract: "Frames/s, events/s and MB/s of decode + JSON over frames held in memory.")

  @Argument(help: "A frames file (default: the real capture in ../shared, else the fixture).")
  var input: String?

  @Option(help: "Timed passes over all frames.")
  var passes: Int = 200

  @Flag(help: "Skip the token-walk baseline (for profiling the translator alone).")
  var noBaseline = false

  func run() throws {
    let path = input ?? Self.defaultInput()
    let frames = try FramesFile.read(path: path).frames
    guard !frames.isEmpty else { throw CLIError("\(path) holds no frames") }
    let bytes = frames.reduce(0) { $0 + $1.count }
    print("input: \(path) (\(frames.count) frames, \(bytes) bytes), \(passes) passes, 1 thread")

    // Baseline: walk every CBOR token of each frame and of every CAR block, doing nothing else.
    let scan = measure(noBaseline ? 0 : passes) {
      var tokens = 0
      for frame in frames {
        frame.withUnsafeBytes { tokens &+= Self.walk($0) }
      }
      return tokens
    }
    let translator = Translator()
    var events: [Event] = []
    var eventCount = 0
    let translate = measure(passes) {
      eventCount = 0
      for frame in frames {
        events.removeAll(keepingCapacity: true)
        translator.translate(frame, into: &events)
        eventCount += events.count
      }
      return eventCount
    }
    let seconds = translate / Double(passes)
    let scanSeconds = scan / Double(passes)
    func rate(_ n: Int, _ s: Double) -> String { String(Int((Double(n) / s).rounded())) }
    print(
      "translate: \(rate(frames.count, seconds)) frames/s, \(rate(eventCount, seconds)) events/s, "
        + "\(rate(bytes / 1000, seconds * 1000)) MB/s, "
        + "\(format3(seconds / Double(eventCount) * 1e6)) µs/event")
    guard !noBaseline else { return }
    print(
      "baseline token walk (libcbor only): \(rate(frames.count, scanSeconds)) frames/s, "
        + "\(format3(scanSeconds / Double(eventCount) * 1e6)) µs/event-equivalent")
    print("ratio translate / token walk: \(format3(seconds / scanSeconds))")
  }

  static func defaultInput() -> String {
    let capture = "../shared/corpus/jetstream-v1-capture/frames.bin.zst"
    return fileExists(capture) ? capture : "Fixtures/synthetic-2000.frames.zst"
  }

  /// Total seconds for `passes` runs of `body`, after one warm-up run.
  private func measure(_ passes: Int, _ body: () -> Int) -> Double {
    var sink = body()
    let clock = ContinuousClock()
    let elapsed = clock.measure {
      for _ in 0..<passes { sink &+= body() }
    }
    if sink == Int.min { print(sink) }  // keep the work observable
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
  }

  /// Counts the tokens of a frame's header and body, and of every block in its CAR.
  static func walk(_ frame: UnsafeRawBufferPointer) -> Int {
    var reader = CBORReader(frame)
    var tokens = 0
    while !reader.isAtEnd {
      switch reader.next() {
      case .invalid: return tokens
      case .bytes(let b) where b.count > 64:
        if let car = CARFile(b) {
          for block in car.blocks {
            var inner = CBORReader(block.data)
            while !inner.isAtEnd, case let token = inner.next() {
              if case .invalid = token { break }
              tokens += 1
            }
          }
        }
      default: tokens += 1
      }
    }
    return tokens
  }
}

func format3(_ value: Double) -> String {
  let scaled = (value * 1000).rounded() / 1000
  return "\(scaled)"
}
