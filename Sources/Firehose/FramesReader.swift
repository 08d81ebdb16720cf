import Compression

/// Streams the frames of a frames file (`[u32 little-endian length][frame]…`, plain or zstd; see
/// `FramesFile`) in bounded memory, whatever the file's size. Declared lengths are not trusted:
/// nothing is allocated from a length. A frame over `maxFrameBytes` is skipped without being
/// held (its bytes are read and dropped) and counted; a frame is only ever assembled from bytes
/// actually read, so a length running past the end costs no more than the bytes that are there.
/// Not thread-safe.
public final class FramesReader {
  /// The largest frame handed out by default: the relay connection's default frame limit
  /// (PROTOCOL §5.1 asks for at least 5 MiB).
  public static let defaultMaxFrameBytes = 5 << 20

  public let maxFrameBytes: Int
  /// Frames handed out so far.
  public private(set) var frames = 0
  /// Frames skipped for declaring more than `maxFrameBytes` (whole ones only: one cut short by
  /// the end of the file counts in `unreadableTailBytes`).
  public private(set) var oversizedFrames = 0
  /// The bytes of the records counted in `oversizedFrames`, length prefixes included.
  public private(set) var oversizedBytes = 0
  /// Bytes at the end of the file that do not form a whole record (set once the end is reached).
  public private(set) var unreadableTailBytes = 0

  private let source: ChunkedFileReader
  /// The read buffer: bytes `start..<end` are read and not yet handed out.
  private let buffer: UnsafeMutableRawBufferPointer
  private var start = 0
  private var end = 0
  /// Where a frame larger than `buffer` is assembled; grows with the bytes read, up to the cap.
  private var large: UnsafeMutableRawBufferPointer? = nil
  private var finished = false

  /// `bufferSize` is the read chunk (tests make it tiny to split frames at every offset);
  /// `readSize` bounds each read from the file (see `ChunkedFileReader`).
  public init(
    path: String, bufferSize: Int = 1 << 20, readSize: Int = 256 << 10,
    maxFrameBytes: Int = FramesReader.defaultMaxFrameBytes
  ) throws {
    source = try ChunkedFileReader(path: path, readSize: readSize)
    buffer = .allocate(byteCount: max(bufferSize, 4), alignment: 16)
    self.maxFrameBytes = maxFrameBytes
  }

  deinit {
    buffer.deallocate()
    large?.deallocate()
  }

  /// Calls `body` with each frame in order until the end of the file. The bytes are only valid
  /// during the call. Throws when the file cannot be read or its zstd stream is corrupt or
  /// truncated (the frames before the damage have been handed out), or when `body` throws.
  public func forEachFrame(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    while let frame = try next() { try body(frame) }
  }

  /// The next frame, valid until the next call; nil at the end of the file.
  public func next() throws -> UnsafeRawBufferPointer? {
    while !finished {
      guard try ensure(4) else {
        finish(tail: end - start)
        return nil
      }
      let p = UnsafeRawPointer(buffer.baseAddress! + start)
      let length =
        Int(p.load(as: UInt8.self)) | Int(p.load(fromByteOffset: 1, as: UInt8.self)) << 8
        | Int(p.load(fromByteOffset: 2, as: UInt8.self)) << 16
        | Int(p.load(fromByteOffset: 3, as: UInt8.self)) << 24
      start += 4
      if length > maxFrameBytes {
        let skipped = try skip(length)
        guard skipped == length else {
          finish(tail: 4 + skipped)
          return nil
        }
        oversizedFrames += 1
        oversizedBytes += 4 + length
        continue
      }
      if length <= buffer.count {
        guard try ensure(length) else {
          finish(tail: 4 + end - start)
          return nil
        }
        let frame = UnsafeRawBufferPointer(start: buffer.baseAddress! + start, count: length)
        start += length
        frames += 1
        return frame
      }
      let assembled = try assemble(length)
      guard assembled == length else {
        finish(tail: 4 + assembled)
        return nil
      }
      frames += 1
      return UnsafeRawBufferPointer(start: large!.baseAddress!, count: length)
    }
    return nil
  }

  private func finish(tail: Int) {
    unreadableTailBytes = tail
    start = end
    finished = true
  }

  /// Makes `count` (≤ the buffer's size) bytes available from `start`, moving what is left to
  /// the front and reading more; false when the file ends first.
  private func ensure(_ count: Int) throws -> Bool {
    if end - start >= count { return true }
    if buffer.count - start < count {
      let left = end - start
      if left > 0 {
        buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: left)
      }
      start = 0
      end = left
    }
    while end - start < count {
      let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
      if n == 0 { return false }
      end += n
    }
    return true
  }

  /// Reads and drops up to `count` bytes; returns how many there were.
  private func skip(_ count: Int) throws -> Int {
    var skipped = min(count, end - start)
    start += skipped
    while skipped < count {
      start = 0
      end = 0
      let n = try source.read(
        into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(buffer.count, count - skipped)])
      )
      if n == 0 { return skipped }
      skipped += n
    }
    return skipped
  }

  /// Assembles a `count`-byte frame (larger than the buffer) in `large`, growing it only as
  /// bytes arrive; returns how many bytes there were.
  private func assemble(_ count: Int) throws -> Int {
    var have = end - start
    reserve(max(have, min(count, 2 * buffer.count)))
    large!.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: have)
    start = 0
    end = 0
    while have < count {
      if have == large!.count { reserve(min(count, 2 * have)) }
      let room = min(large!.count, count) - have
      let n = try source.read(
        into: UnsafeMutableRawBufferPointer(start: large!.baseAddress! + have, count: room))
      if n == 0 { return have }
      have += n
    }
    return have
  }

  /// Grows `large` to at least `capacity` bytes, keeping its contents.
  private func reserve(_ capacity: Int) {
    if let large, large.count >= capacity { return }
    let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
    if let large {
      grown.baseAddress!.copyMemory(from: large.baseAddress!, byteCount: large.count)
      large.deallocate()
    }
    large = grown
  }
}
