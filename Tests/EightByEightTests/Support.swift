import Foundation

/// Files of this repository, found from this source file (tests run from the checkout).
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func webhookFixtures() throws -> [(name: String, body: Data)] {
        let folder = root.appendingPathComponent("Tests/EightByEightTests/Webhooks")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted().map {
            (String($0.dropLast(5)), try Data(contentsOf: folder.appendingPathComponent($0)))
        }
    }

    static func webhook(_ name: String) throws -> Data {
        try Data(contentsOf: root.appendingPathComponent("Tests/EightByEightTests/Webhooks/\(name).json"))
    }
}
