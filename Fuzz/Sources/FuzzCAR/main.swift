import Firehose
import FuzzSupport

nonisolated(unsafe) private var scratch: [CARFile.Block] = []
nonisolated(unsafe) private var converter = RecordConverter()
nonisolated(unsafe) private var sink = ByteSink()

/// Target (b): a CARv1 → root and blocks, then every block found again by its CID (both the
/// struct and the static hot-path API), the commit block decoded, and every block converted.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  let car = CARFile(input)
  let root = CARFile.read(input, into: &scratch)
  guard (car == nil) == (root == nil) else {
    fuzzFailure("CARFile.init and CARFile.read disagree", input)
  }
  guard let car else { return 0 }
  guard car.blocks.count == scratch.count else {
    fuzzFailure("CARFile.init and CARFile.read found different block counts", input)
  }
  for block in car.blocks {
    guard let found = car.block(for: block.cid),
      let again = CARFile.block(for: block.cid, in: scratch)
    else {
      fuzzFailure("a block is not found by its own CID", input)
    }
    // Duplicate CIDs may map to any of their blocks; the bytes must still lie in the input.
    for data in [found, again] where data.count > 0 {
      guard let base = input.baseAddress, let p = data.baseAddress,
        p >= base, p + data.count <= base + input.count
      else {
        fuzzFailure("a block lies outside the input", input)
      }
    }
    sink.count = 0
    if converter.write(block.data, to: &sink), !JSONCheck.isValid(sink.bytes) {
      fuzzFailure("a converted block is not valid JSON", input)
    }
  }
  if let commitData = car.block(for: car.root), let commit = CommitBlock(commitData),
    let data = commit.data
  {
    _ = car.block(for: data)
  }
  return 0
}
