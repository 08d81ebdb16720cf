import ArgumentParser
import Events
import SyntheticFirehose

/// `contrail bench large-commit`: translate time of single commits with thousands of ops and
/// blocks, at growing sizes; linear work shows as a flat time per MB.
struct BenchLargeCommit: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "large-commit",
    abstract: "Translate time of one commit with N ops and N+1 blocks, for several N.")

  @Option(help: "Op counts to build commits with, comma-separated.")
  var ops: String = "500,1000,2000,4000,8000"

  @Option(help: "Trials per size; the best is reported.")
  var trials: Int = 5

  func run() throws {
    let counts = ops.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
    guard !counts.isEmpty, trials > 0 else { throw ValidationError("--ops and --trials") }
    let translator = Translator()
    var events: [Event] = []
    let clock = ContinuousClock()
    var firstPerMB: Double?
    print("ops     bytes     best ms   ms/MB    ratio to first")
    for count in counts {
      let frame = FrameBuilder.postsCommit(count: count)
      var best = Double.infinity
      for _ in 0..<trials {
        events.removeAll(keepingCapacity: true)
        let time = clock.measure { translator.translate(frame, into: &events) }
        best = min(
          best, Double(time.components.seconds) + Double(time.components.attoseconds) * 1e-18)
      }
      guard events.count == count else { throw CLIError("expected \(count) events") }
      let perMB = best * 1e3 / (Double(frame.count) / 1e6)
      let first = firstPerMB ?? perMB
      firstPerMB = first
      print(
        "\(count)\t\(frame.count)\t\(format3(best * 1e3))\t\(format3(perMB))\t\(format3(perMB / first))"
      )
    }
  }
}
