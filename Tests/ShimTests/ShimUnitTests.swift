import ContainerdAPI
import Foundation
import SwiftProtobuf
import Testing
import TestSupport
@testable import Shim

@Suite struct ShimFlagTests {
    @Test func containerdsStartCommandLineParses() throws {
        let f = try ShimFlags.parse(["-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
                                     "-publish-binary", "/usr/bin/containerd", "-id", "abc", "-debug", "start"])
        #expect(f.action == .start)
        #expect(f.namespace == "k8s.io")
        #expect(f.address == "/run/containerd/containerd.sock")
        #expect(f.id == "abc")
        #expect(f.debug)
    }

    @Test func goFlagSpellingsParse() throws {
        let f = try ShimFlags.parse(["--namespace=default", "-id=x", "-bundle", "/b", "delete"])
        #expect(f.action == .delete)
        #expect(f.namespace == "default" && f.id == "x" && f.bundle == "/b")
        #expect(try ShimFlags.parse(["-v"]).action == .version)
    }

    @Test func badCommandLinesNameTheProblem() {
        #expect(throws: ShimError.self) { try ShimFlags.parse(["-namespace", "d", "-id", "x"]) }
        do {
            _ = try ShimFlags.parse(["-frobnicate", "1", "start"])
            Issue.record("an unknown flag was accepted")
        } catch {
            #expect(error.message.contains("-frobnicate") && error.message.contains("-namespace"))
        }
        do {
            _ = try ShimFlags.parse(["-namespace", "d", "start"])
            Issue.record("a missing -id was accepted")
        } catch {
            #expect(error.message.contains("-id"))
        }
        #expect(throws: ShimError.self) { try ShimFlags.parse(["-namespace", "d", "-id", "x", "fly"]) }
        #expect(throws: ShimError.self) { try ShimFlags.parse(["-namespace"]) }
    }
}

@Suite struct ShimAddressTests {
    @Test func theAddressIsContainerdsHashOfAddressNamespaceAndGroup() {
        // sha256("/run/containerd/containerd.sock/default/pod-a"), as containerd's shim.SocketAddress computes it.
        #expect(ShimAddress.socketAddress(containerdAddress: "/run/containerd/containerd.sock", namespace: "default", group: "pod-a")
            == "unix:///run/containerd/s/6068521a44f691be4db0c1f844a9b42bda6d9979971e556c5c592ba2faff2890")
        #expect(ShimAddress.cleanJoin(["/a//b/", "./c", "d/../e"]) == "/a/b/c/e")
        #expect(ShimAddress.path(of: "unix:///run/x") == "/run/x")
    }

    @Test func podsAreGroupedByTheCRISandboxAnnotations() {
        #expect(ShimAddress.group(containerID: "c1", annotations: [:]) == "c1")
        #expect(ShimAddress.group(containerID: "c1", annotations: ["io.kubernetes.cri.sandbox-id": "pod"]) == "pod")
        #expect(ShimAddress.group(containerID: "c1", annotations: ["io.kubernetes.cri-o.SandboxID": "crio-pod"]) == "crio-pod")
    }

    @Test func eventsArePackedWithContainerdsTypeNames() throws {
        let any = try TypeURL.pack(Containerd_Events_TaskExit.with { $0.containerID = "c" })
        #expect(any.typeURL == "containerd.events.TaskExit")
        #expect(TypeURL.cgroupsV2Metrics == "io.containerd.cgroups.v2.Metrics")
        #expect(TypeURL.name(of: .with { $0.typeURL = TypeURL.ociProcess }) == "Process")
    }
}

/// The binary's own command line: `-v`, and `delete` as containerd runs it after a shim is gone.
@Suite struct ShimBinaryTests {
    static var shim: String? { BuiltProducts.path(of: "containerd-shim-cocoon-v2") }

    func run(_ args: [String], in directory: String = "/") throws -> (Int32, Data, String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: try #require(Self.shim))
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, stdout, String(decoding: stderr, as: UTF8.self))
    }

    @Test(.enabled(if: shim != nil, "the shim binary is not built next to the tests"))
    func versionAndUsage() throws {
        let (status, out, _) = try run(["-v"])
        #expect(status == 0)
        #expect(String(decoding: out, as: UTF8.self).contains("containerd-shim-cocoon-v2"))
        let (bad, _, err) = try run(["-namespace", "x", "start"])
        #expect(bad == 1)
        #expect(err.contains("-id"), "\(err)")
    }

    @Test(.enabled(if: shim != nil, "the shim binary is not built next to the tests"))
    func deleteWithoutAShimAnswersADeleteResponseEveryTime() throws {
        let bundle = NSTemporaryDirectory() + "cocoon-shim-delete-\(getpid())"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        for _ in 0..<2 {
            let (status, out, err) = try run(["-namespace", "default", "-address", "/nonexistent/containerd.sock",
                                              "-publish-binary", "/usr/bin/containerd", "-id", "gone", "-bundle", bundle, "delete"],
                                             in: bundle)
            #expect(status == 0, "\(err)")
            let response = try Containerd_Task_V2_DeleteResponse(serializedBytes: [UInt8](out))
            #expect(response.exitStatus == 137)
            #expect(response.exitedAt.seconds > 0)
        }
    }
}
