import App
import ArgumentParser
import Events
import Firehose
import SyntheticFirehose

/// `contrail translate`: relay frames file → Jetstream events as JSONL.
struct Translate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Translate a frames file into Jetstream v1 events (JSONL).",
    discussion: """
      INPUT holds relay frames as [u32 little-endian length][frame]…, plain or zstd-compressed; \
      it is streamed in bounded memory. Malformed frames are skipped and counted, frames over \
      --max-frame-size are skipped unread and counted as oversize; a summary goes to standard \
      error. A damaged zstd stream fails the command after the frames before the damage.
      """)

  @Argument(help: "The frames file.")
  var input: String

  @Option(name: .shortAndLong, help: "Write JSONL here instead of standard output.")
  var output: String?

  @Option(help: "Skip frames longer than this, counted as oversize (default 5MiB, as serve).")
  var maxFrameSize: String?

  /// The read chunk, for tests that split frames across reads.
  @Option(help: .hidden)
  var readChunkBytes: Int = 1 << 20

  /// Output is gathered into blocks of about this size before each write.
  static let outputBlock = 256 << 10

  func run() throws {
    var maxFrameBytes = FramesReader.defaultMaxFrameBytes
    if let maxFrameSize {
      guard let bytes = ServeValue.bytes(maxFrameSize), (1024...(1 << 30)).contains(bytes) else {
        throw ValidationError("--max-frame-size must be a size from 1KiB to 1GiB")
      }
      maxFrameBytes = bytes
    }
    guard readChunkBytes > 0 else { throw ValidationError("--read-chunk-bytes must be positive") }
    let reader = try FramesReader(
      path: input, bufferSize: readChunkBytes, readSize: min(readChunkBytes, 256 << 10),
      maxFrameBytes: maxFrameBytes)
    let out = try OutputFile(path: output)
    let translator = Translator()
    var block = JSONLines()
    block.bytes.reserveCapacity(Self.outputBlock + (64 << 10))
    var failure: (any Error)? = nil
    var oversize = 0
    while true {
      let frame: UnsafeRawBufferPointer?
      do {
        frame = try reader.next()
      } catch {
        // A read error or a damaged zstd stream: keep what was translated, summarise, then fail.
        failure = error
        break
      }
      while oversize < reader.oversizedFrames {
        translator.countDropped(.oversize)
        oversize += 1
      }
      guard let frame else { break }
      translator.translate(frame, into: &block)
      if block.bytes.count >= Self.outputBlock {
        try out.write(block.bytes)
        block.bytes.removeAll(keepingCapacity: true)
      }
    }
    try out.write(block.bytes)
    try out.close()
    var summary = translator.counters.summary
    if reader.unreadableTailBytes > 0 {
      summary += "; \(reader.unreadableTailBytes) trailing bytes do not form a whole frame"
    }
    printError(summary)
    if let failure { throw failure }
  }
}

/// Each v1 event's JSON and a newline, appended as the translator writes it. `sync` events
/// (stored for the v2 wire) are not v1 events: Jetstream v1 never emits them.
private struct JSONLines: EventSink {
  var bytes: [UInt8] = []

  mutating func take(_ header: EventHeader, json: UnsafeRawBufferPointer) {
    guard header.kind != .sync else { return }
    bytes.append(contentsOf: json)
    bytes.append(UInt8(ascii: "\n"))
  }
}
