import ArgumentParser
import Compression
import Firehose
import Foundation
import SyntheticFirehose

/// `contrail compress`: JSONL on standard input → length-prefixed zstd frames on standard output.
struct Compress: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Compress JSONL lines into [u32 LE length][zstd frame]… (one frame per line).")

  @Option(help: "The dictionary file.")
  var dictionary: String

  @Option(help: "zstd level.")
  var level: Int32 = 3

  func run() throws {
    let compressor = try EventCompressor(
      dictionary: try ZstdDictionary(path: dictionary), level: level)
    let input = try FileBytes.read("/dev/stdin")
    let out = try OutputFile(path: nil)
    var chunk: [UInt8] = []
    for line in input.split(separator: UInt8(ascii: "\n")) {
      FramesFile.append(try line.withUnsafeBytes { try compressor.compress($0) }, to: &chunk)
      if chunk.count > 1 << 20 {
        try out.write(chunk)
        chunk.removeAll(keepingCapacity: true)
      }
    }
    try out.write(chunk)
    try out.close()
  }
}

/// `contrail decompress`: length-prefixed zstd frames on standard input → JSONL.
struct Decompress: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Decompress [u32 LE length][zstd frame]… into JSONL (one line per frame).")

  @Option(help: "The dictionary file.")
  var dictionary: String

  func run() throws {
    let decompressor = try EventDecompressor(dictionary: try ZstdDictionary(path: dictionary))
    let records = try FramesFile.parse(try FileBytes.read("/dev/stdin"))
    let out = try OutputFile(path: nil)
    for (index, frame) in records.frames.enumerated() {
      do {
        try out.write(try decompressor.decompress(frame) + [UInt8(ascii: "\n")])
      } catch {
        throw CLIError("frame \(index + 1): \(error)")
      }
    }
    try out.close()
    if records.unreadableTailBytes > 0 {
      throw CLIError("\(records.unreadableTailBytes) trailing bytes do not form a whole frame")
    }
  }
}
