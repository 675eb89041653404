import AgentAPI
import Cgroups
import LinuxContainer
import Mux
import OCI
import SystemCalls
import TTRPC
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

extension AgentService {
    func registerContainerMethods(_ s: inout TTRPCService, mux: Mux) {
        let containers = self.containers
        let mode = self.mode
        let logger = self.logger
        s.unary("CreateSandbox") { (_, r: Cocoon_Agent_V1_CreateSandboxRequest) -> Cocoon_Agent_V1_Empty in
            if !r.storages.isEmpty || !r.hostname.isEmpty {
                guard mode == .guest else {
                    throw GuestAgentError(.failedPrecondition, "storages and hostname are only set up in a guest, not by a host-process agent")
                }
            }
            for (i, storage) in r.storages.enumerated() { try GuestStorage.mount(storage, field: "storages[\(i)]") }
            if !r.hostname.isEmpty {
                guard r.hostname.utf8.count <= 64 else { throw GuestAgentError(.invalidArgument, "hostname longer than 64 bytes") }
                guard sethostname(r.hostname, r.hostname.utf8.count) == 0 else {
                    throw GuestAgentError(.internal, "sethostname: \(String(cString: strerror(errno)))")
                }
            }
            logger.info("sandbox ready", metadata: ["id": "\(r.sandboxID)", "storages": "\(r.storages.count)"])
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("DestroySandbox") { (_, _: Cocoon_Agent_V1_DestroySandboxRequest) -> Cocoon_Agent_V1_Empty in
            containers.removeAll()
            if mode == .guest { GuestStorage.unmountAll(under: "/run/cocoon/shared") }
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("CreateContainer") { (_, r: Cocoon_Agent_V1_CreateContainerRequest) -> Cocoon_Agent_V1_CreateContainerResponse in
            let pid = try containers.create(r, mux: mux)
            return .with { $0.pid = pid }
        }
        s.unary("StartContainer") { (_, r: Cocoon_Agent_V1_ContainerRequest) -> Cocoon_Agent_V1_Empty in
            try containers.start(r.containerID)
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("RemoveContainer") { (_, r: Cocoon_Agent_V1_RemoveContainerRequest) -> Cocoon_Agent_V1_Empty in
            try containers.remove(r)
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("PauseContainer") { (_, r: Cocoon_Agent_V1_ContainerRequest) -> Cocoon_Agent_V1_Empty in
            try containers.withRuntime(r.containerID) { (rt) throws(LinuxContainerError) in try rt.pause(r.containerID) }
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("ResumeContainer") { (_, r: Cocoon_Agent_V1_ContainerRequest) -> Cocoon_Agent_V1_Empty in
            try containers.withRuntime(r.containerID) { (rt) throws(LinuxContainerError) in try rt.resume(r.containerID) }
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("UpdateContainer") { (_, r: Cocoon_Agent_V1_UpdateContainerRequest) -> Cocoon_Agent_V1_Empty in
            let resources: Resources
            do {
                resources = try JSONDecoder().decode(Resources.self, from: Data(r.resourcesJson))
            } catch {
                throw GuestAgentError(.invalidArgument, "UpdateContainerRequest.resources_json: not valid OCI linux.resources: \(error)")
            }
            try containers.withRuntime(r.containerID) { (rt) throws(LinuxContainerError) in try rt.update(r.containerID, resources: resources) }
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("Stats") { (_, r: Cocoon_Agent_V1_ContainerRequest) -> Cocoon_Agent_V1_StatsResponse in
            let stats = try containers.withRuntime(r.containerID) { (rt) throws(LinuxContainerError) in try rt.stats(r.containerID, ofStopped: true) }
            return .with {
                $0.memoryUsageBytes = stats.memoryUsageBytes ?? 0
                $0.memoryLimitBytes = stats.memoryLimitBytes ?? 0
                $0.cpuUsageNanoseconds = stats.cpuUsageNanoseconds ?? 0
                $0.pidsCurrent = stats.pidsCurrent ?? 0
                $0.pidsLimit = stats.pidsLimit ?? 0
                $0.oomKills = stats.oomKills ?? 0
            }
        }
        s.unary("ListProcesses") { (_, r: Cocoon_Agent_V1_ContainerRequest) -> Cocoon_Agent_V1_ListProcessesResponse in
            let pids = try containers.withRuntime(r.containerID) { (rt) throws(LinuxContainerError) in try rt.processes(r.containerID) }
            return .with { $0.pids = pids }
        }
        s.unary("ExecProcess") { (_, r: Cocoon_Agent_V1_ExecProcessRequest) -> Cocoon_Agent_V1_ExecProcessResponse in
            let pid = try containers.exec(r, mux: mux)
            return .with { $0.pid = pid }
        }
        s.unary("SignalProcess") { (_, r: Cocoon_Agent_V1_SignalProcessRequest) -> Cocoon_Agent_V1_Empty in
            try containers.signal(r)
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("WaitProcess") { (context, r: Cocoon_Agent_V1_ProcessRequest) -> Cocoon_Agent_V1_WaitProcessResponse in
            let status = try containers.wait(r, until: context.deadline)
            return .with { $0.exitStatus = status }
        }
        s.unary("ResizeTTY") { (_, r: Cocoon_Agent_V1_ResizeTTYRequest) -> Cocoon_Agent_V1_Empty in
            try containers.process(r.containerID, r.execID).stdio.resize(rows: r.rows, columns: r.columns)
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("CloseStdin") { (_, r: Cocoon_Agent_V1_ProcessRequest) -> Cocoon_Agent_V1_Empty in
            try containers.process(r.containerID, r.execID).stdio.closeStdin()
            return Cocoon_Agent_V1_Empty()
        }
    }
}
