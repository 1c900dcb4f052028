import Foundation
import Testing
@testable import SteleAudit

@Suite("Fixtures are generated, not hand-edited")
struct FixtureDriftTests {
    @Test("the checked-in fixture bytes equal what the generator produces")
    func checkedInFixturesMatchTheGenerator() throws {
        let generated = FixtureSet.files()
        if ProcessInfo.processInfo.environment["STELE_REGENERATE_FIXTURES"] == "1" {
            for (relative, bytes) in generated {
                let url = FixtureSet.root.appendingPathComponent(relative)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(bytes).write(to: url)
            }
        }
        for (relative, bytes) in generated.sorted(by: { $0.key < $1.key }) {
            let onDisk = try #require(FileManager.default.contents(atPath: FixtureSet.path(relative)), "missing fixture \(relative)")
            #expect([UInt8](onDisk) == bytes, "fixture \(relative) drifted from its generator; rerun with STELE_REGENERATE_FIXTURES=1 if intended")
        }
    }

    @Test("no stray files under Fixtures/ besides the generated ones and the README")
    func noStrayFixtures() throws {
        let expected = Set(FixtureSet.files().keys).union(["README.md"])
        let enumerator = try #require(FileManager.default.enumerator(atPath: FixtureSet.root.path))
        var found = Set<String>()
        while let relative = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: FixtureSet.path(relative), isDirectory: &isDirectory), !isDirectory.boolValue {
                found.insert(relative)
            }
        }
        #expect(found == expected)
    }

    @Test("generation is deterministic: two runs give identical bytes")
    func generationIsDeterministic() {
        #expect(FixtureSet.files() == FixtureSet.files())
    }
}
