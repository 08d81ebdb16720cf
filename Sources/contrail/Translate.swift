import ArgumentParser
import Events
import SyntheticFirehose

/// `contrail translate`: relay frames file → Jetstream events as JSONL.
struct Translate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Translate a frames file into Jetstream v1 events (JSONL).",
    discussion: """
      INPUT holds relay frames as [u32 little-endian length][frame]…, plain or zstd-compressed. \
      Malformed frames are skipped and counted; a summary goes to standard error.
      """)

  @Argument(help: "The frames file.")
  var input: String

  @Option(name: .shortAndLong, help: "Write JSONL here instead of standard output.")
  var output: String?

  func run() throws {
    let contents = try FramesFile.read(path: input)
    let out = try OutputFile(path: output)
    let translator = Translator()
    var events: [Event] = []
    var line: [UInt8] = []
    for frame in contents.frames {
      events.removeAll(keepingCapacity: true)
      translator.translate(frame, into: &events)
      line.removeAll(keepingCapacity: true)
      for event in events {
        line.append(contentsOf: event.json)
        line.append(UInt8(ascii: "\n"))
      }
      try out.write(line)
    }
    try out.close()
    var summary = translator.counters.summary
    if contents.unreadableTailBytes > 0 {
      summary += "; \(contents.unreadableTailBytes) trailing bytes do not form a whole frame"
    }
    printError(summary)
  }
}
