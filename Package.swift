// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "eightbyeight-connector",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "connector", targets: ["Connector"]),
        .library(name: "Kafka", targets: ["Kafka"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.24.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.8.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .systemLibrary(
            name: "CMimalloc",
            providers: [.apt(["libmimalloc-dev"])]
        ),
        .target(
            name: "MemoryAllocator",
            dependencies: ["CMimalloc"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ChatEvents",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EightByEight",
            dependencies: [
                "ChatEvents",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "IngressService",
            dependencies: [
                "ChatEvents",
                "ConnectorConfiguration",
                "EightByEight",
                "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FlowEngine",
            dependencies: [
                "ChatEvents",
                "DataProtection",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DataProtection",
            dependencies: [
                "ChatEvents",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BotWorker",
            dependencies: [
                "ServiceSupport",
                "ChatEvents",
                "DataProtection",
                .product(name: "Crypto", package: "swift-crypto"),
                "ConnectorConfiguration",
                "FlowEngine",
                "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceSupport",
            dependencies: [
                "Kafka",
                "ChatEvents",
                "ConnectorConfiguration",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EgressService",
            dependencies: [
                "ServiceSupport",
                "ChatEvents",
                "DataProtection",
                "EightByEight",
                "Kafka",
                "ConnectorConfiguration",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Simulator",
            dependencies: [
                "ChatEvents",
                "EightByEight",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ConnectorConfiguration",
            dependencies: [
                "ChatEvents",
                "Kafka",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Connector",
            dependencies: [
                "MemoryAllocator",
                "Kafka",
                "ChatEvents",
                "ConnectorConfiguration",
                "IngressService",
                "BotWorker",
                "EgressService",
                "DataProtection",
                "FlowEngine",
                "Simulator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KafkaBenchmark",
            dependencies: [
                "CRdKafka",
                "Kafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/KafkaBenchmark",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: ["ChatEvents", "Kafka", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KafkaTests",
            dependencies: [
                "Kafka",
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EightByEightTests",
            dependencies: [
                "EightByEight",
                "TestSupport",
                "ChatEvents",
                "Simulator",
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Webhooks"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IngressServiceTests",
            dependencies: [
                "IngressService",
                "TestSupport",
                "Simulator",
                "EightByEight",
                "ChatEvents",
                "ConnectorConfiguration",
                "Kafka",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "IngressBenchmark",
            dependencies: [
                "MemoryAllocator",
                "IngressService",
                "Simulator",
                "EightByEight",
                "ConnectorConfiguration",
                "Kafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/IngressBenchmark",
            exclude: ["webhooks.lua"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "IngressStepsBenchmark",
            dependencies: [
                "ChatEvents",
                "EightByEight",
                "Simulator",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            path: "Benchmarks/IngressStepsBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "PipelineBenchmark",
            dependencies: [
                "MemoryAllocator",
                "IngressService",
                "BotWorker",
                "EgressService",
                "Simulator",
                "EightByEight",
                "ChatEvents",
                "ConnectorConfiguration",
                "Kafka",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/PipelineBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KafkaRoundTripBenchmark",
            dependencies: [
                "Kafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/KafkaRoundTripBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "PIIBenchmark",
            dependencies: ["DataProtection"],
            path: "Benchmarks/PIIBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "WorkerBenchmark",
            dependencies: [
                "MemoryAllocator",
                "IngressService",
                "BotWorker",
                "ChatEvents",
                "ConnectorConfiguration",
                "Kafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/WorkerBenchmark",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConnectorCommandTests",
            dependencies: [
                "ChatEvents",
                "Kafka",
                "Simulator",
                "TestSupport",
                "EightByEight",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DataProtectionTests",
            dependencies: [
                "DataProtection",
                "TestSupport",
                "ChatEvents",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EgressServiceTests",
            dependencies: [
                "EgressService",
                "ServiceSupport",
                "ChatEvents",
                "EightByEight",
                "Kafka",
                "ConnectorConfiguration",
                "Simulator",
                "TestSupport",
                "IngressService",
                "BotWorker",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowEngineTests",
            dependencies: ["FlowEngine", "ChatEvents", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BotWorkerTests",
            dependencies: [
                "BotWorker",
                "TestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                "FlowEngine",
                "ChatEvents",
                "ConnectorConfiguration",
                "IngressService",
                "Simulator",
                "EightByEight",
                "Kafka",
                "ServiceSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConnectorConfigurationTests",
            dependencies: ["ConnectorConfiguration", "ChatEvents"],
            swiftSettings: swiftSettings
        ),
    ]
)
