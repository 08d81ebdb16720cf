import Synchronization
import SyntheticFirehose

/// What a fixture relay serves: frames by position, each with the seq a cursor compares against.
public protocol RelaySource: Sendable {
  /// The frame at `position` (0 = the oldest held), or nil past the end.
  func frame(at position: Int) -> (seq: Int64, bytes: [UInt8])?
  /// The first position whose seq is greater than `cursor`.
  func position(after cursor: Int64) -> Int
  /// The seq of the oldest frame held; a cursor below `oldestSeq - 1` is outdated.
  var oldestSeq: Int64 { get }
  /// The seq of the newest frame there will ever be, for a source that ends; a cursor above it
  /// gets `FutureCursor`, as from a real relay. nil: the source never ends.
  var newestSeq: Int64? { get }
}

extension RelaySource {
  public var newestSeq: Int64? { nil }
}

/// Frames from a file. With `loop`, the frames repeat under new seqs that keep increasing
/// (each pass adds the file's seq span).
public struct FileRelaySource: RelaySource {
  private let frames: [[UInt8]]
  /// Each frame's seq (frames without one take their predecessor's) and its value's bytes.
  private let seqs: [Int64]
  private let seqRanges: [Range<Int>?]
  private let loop: Bool
  private let span: Int64

  public init(frames: [[UInt8]], loop: Bool) {
    var seqs: [Int64] = []
    var ranges: [Range<Int>?] = []
    var previous: Int64 = 0
    for frame in frames {
      let located = FrameSeq.locate(frame)
      previous = located?.seq ?? previous
      seqs.append(previous)
      ranges.append(located?.range)
    }
    self.frames = frames
    self.seqs = seqs
    self.seqRanges = ranges
    self.loop = loop
    self.span = (seqs.last ?? 0) - (seqs.first ?? 0) + 1
  }

  public var oldestSeq: Int64 { seqs.first ?? 1 }

  public var newestSeq: Int64? { loop ? nil : seqs.max() }

  public func frame(at position: Int) -> (seq: Int64, bytes: [UInt8])? {
    guard !frames.isEmpty, loop || position < frames.count else { return nil }
    let (pass, index) = position.quotientAndRemainder(dividingBy: frames.count)
    let seq = seqs[index] + Int64(pass) * span
    guard pass > 0, let range = seqRanges[index] else { return (seq, frames[index]) }
    return (seq, FrameSeq.rewrite(frames[index], to: seq, at: range))
  }

  public func position(after cursor: Int64) -> Int {
    guard !frames.isEmpty else { return 0 }
    var pass = 0
    if loop && cursor >= oldestSeq {
      pass = Int((cursor - oldestSeq) / span)
    }
    let shifted = cursor - Int64(pass) * span
    let index = seqs.firstIndex { $0 > shifted } ?? frames.count
    return pass * frames.count + index
  }
}

/// An endless synthetic firehose: position `p` is the generator's frame with seq
/// `firstSeq + p`, generated on first use. The newest `window` frames are held.
public final class SyntheticRelaySource: RelaySource {
  private struct State {
    var generator: FirehoseGenerator
    var held: [[UInt8]] = []
    var heldStart = 0  // the position of held[0]
  }

  private let state: Mutex<State>
  private let firstSeq: Int64
  private let window: Int

  public init(seed: UInt64, firstSeq: Int64 = 1, window: Int = 20_000) {
    self.firstSeq = firstSeq
    self.window = window
    self.state = Mutex(State(generator: FirehoseGenerator(seed: seed, firstSeq: firstSeq)))
  }

  public var oldestSeq: Int64 { firstSeq + Int64(state.withLock { $0.heldStart }) }

  public func frame(at position: Int) -> (seq: Int64, bytes: [UInt8])? {
    state.withLock { state in
      guard position >= state.heldStart else { return nil }
      while state.heldStart + state.held.count <= position {
        state.held.append(state.generator.next())
        if state.held.count > window {
          let drop = state.held.count - window
          state.held.removeFirst(drop)
          state.heldStart += drop
        }
      }
      return (firstSeq + Int64(position), state.held[position - state.heldStart])
    }
  }

  public func position(after cursor: Int64) -> Int {
    max(0, Int(cursor - firstSeq + 1))
  }
}
