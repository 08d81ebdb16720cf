import ArgumentParser
import Compression
import Events
import Firehose
import SyntheticFirehose

/// `contrail generate`: a deterministic synthetic frames file (and its expected events).
struct Generate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write synthetic relay frames, and optionally the events they translate to.",
    discussion: """
      The same --seed gives the same bytes on every machine. FILE is zstd-compressed when its \
      name ends in .zst. The expected JSONL is stamped by a deterministic clock (time_us counts \
      up from the generator's start time), so it is reproducible too.
      """)

  @Option(help: "How many frames.")
  var frames: Int = 2_000

  @Option(help: "The random seed.")
  var seed: UInt64 = 1

  @Option(help: "The seq of the first frame.")
  var firstSeq: Int64 = 1

  @Option(name: .shortAndLong, help: "The frames file to write.")
  var output: String

  @Option(help: "zstd level for a .zst output (1–22).")
  var level: Int32 = 3

  @Option(help: "Also write the translator's events for the frames here (JSONL).")
  var expected: String?

  func validate() throws {
    guard frames > 0 else { throw ValidationError("--frames must be positive") }
    guard (1...22).contains(level) else { throw ValidationError("--level must be 1–22") }
  }

  func run() throws {
    var generator = FirehoseGenerator(seed: seed, firstSeq: firstSeq)
    let out = try OutputFile(path: output)
    let compressor = output.hasSuffix(".zst") ? try ZstdStream.Writer(level: level) : nil
    let jsonl = try expected.map { try OutputFile(path: $0) }
    let translator = Translator(
      sequencer: Sequencer(last: FirehoseGenerator.defaultStart, clock: { 0 }))
    var chunk: [UInt8] = []
    var events: [Event] = []
    var lines: [UInt8] = []
    func flush() throws {
      try out.write(try compressor?.compress(chunk) ?? chunk)
      chunk.removeAll(keepingCapacity: true)
      try jsonl?.write(lines)
      lines.removeAll(keepingCapacity: true)
    }
    for _ in 0..<frames {
      let frame = generator.next()
      FramesFile.append(frame, to: &chunk)
      if jsonl != nil {
        events.removeAll(keepingCapacity: true)
        translator.translate(frame, into: &events)
        for event in events {
          lines.append(contentsOf: event.json)
          lines.append(UInt8(ascii: "\n"))
        }
      }
      if chunk.count >= 4 << 20 { try flush() }
    }
    try flush()
    if let compressor { try out.write(try compressor.finish()) }
    try out.close()
    try jsonl?.close()
    if jsonl != nil { printError(translator.counters.summary) }
  }
}
