import Compression
import TestSupport
import XCTest

final class TrainerTests: XCTestCase {
  private func samples() throws -> [[UInt8]] {
    try XCTUnwrap(
      SharedData.read(SharedData.projectRoot + "/Fixtures/synthetic-2000.expected.jsonl")
    )
    .split(separator: UInt8(ascii: "\n")).map(Array.init)
  }

  func testTrainingIsDeterministicAndEvaluatesOnHeldOutSamples() throws {
    let all = try samples()
    let (training, heldOut) = DictionaryTrainer.holdOut(all, percent: 10)
    XCTAssertEqual(training.count + heldOut.count, all.count)
    XCTAssertEqual(heldOut.count, all.count / 10)
    XCTAssertTrue(
      Set(heldOut).isDisjoint(with: Set(training)), "held-out samples are not trained on")

    let trainer = DictionaryTrainer(size: 16 << 10, id: 424_242, optimize: false)
    let first = try trainer.train(training)
    let second = try trainer.train(training)
    XCTAssertEqual(first.bytes, second.bytes, "same samples and options, same dictionary")
    XCTAssertEqual(first.id, 424_242)
    XCTAssertLessThanOrEqual(first.bytes.count, 16 << 10)

    let trained = try DictionaryTrainer.evaluate(first, on: heldOut)
    XCTAssertEqual(trained.samples, heldOut.count)
    XCTAssertEqual(trained.rawBytes, heldOut.reduce(0) { $0 + $1.count })
    XCTAssertLessThan(
      trained.ratio, 0.45, "a dictionary trained on these events compresses unseen ones")
    // Compared with a dictionary trained on something unrelated, it must do clearly better.
    let unrelated = try DictionaryTrainer(size: 16 << 10, id: 7, optimize: false).train(
      (0..<500).map { Array("line \($0): lorem ipsum dolor sit amet \($0 * 7919)".utf8) })
    XCTAssertLessThan(trained.ratio, try DictionaryTrainer.evaluate(unrelated, on: heldOut).ratio)
  }

  func testTooFewSamplesAreRefused() {
    XCTAssertThrowsError(try DictionaryTrainer(id: 1).train([[1, 2, 3]])) {
      XCTAssertTrue("\($0)".contains("at least 10 samples"), "\($0)")
    }
  }
}
