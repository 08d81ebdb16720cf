import Firehose

/// Reads and rewrites the relay `seq` of a frame (the body's top-level `seq` integer), which the
/// fixture relay needs for cursors and for replaying a file under new seqs.
public enum FrameSeq {
  /// The seq and the byte range of its encoded value, or nil for frames without one.
  public static func locate(_ frame: [UInt8]) -> (seq: Int64, range: Range<Int>)? {
    frame.withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      guard reader.skipValue(), case .map(let count) = reader.next() else { return nil }
      for _ in 0..<count {
        guard case .text(let key) = reader.next() else { return nil }
        let start = reader.offset
        if key.matches("seq") {
          guard case .unsigned(let seq) = reader.next(), seq <= UInt64(Int64.max) else {
            return nil
          }
          return (Int64(seq), start..<reader.offset)
        }
        guard reader.skipValue() else { return nil }
      }
      return nil
    }
  }

  /// The frame with its seq replaced (the value is re-encoded in shortest form).
  public static func rewrite(_ frame: [UInt8], to seq: Int64, at range: Range<Int>) -> [UInt8] {
    Array(frame[..<range.lowerBound]) + CBORValue.int(seq).encoded + frame[range.upperBound...]
  }
}
