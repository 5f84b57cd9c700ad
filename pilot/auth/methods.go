package auth

import (
	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Rule is what a method asks of its caller.
type Rule struct {
	// Role is the least role allowed (admin > member > viewer).
	Role pilotv1.Role
	// Mutates marks a method that changes state: the audit log records
	// every call of it.
	Mutates bool
	// DefaultTenantOnly reserves the method to callers of DefaultTenant
	// (with Role): the platform team, not a customer's admins.
	DefaultTenantOnly bool
}

// NoTokenMethods are the only methods served without an API token. Each
// authenticates its caller itself: Join by a single-use join token,
// FrontgateLink.Connect by a frontgate's client certificate.
func NoTokenMethods() []string {
	return []string{
		pilotv1.EnrollmentService_Join_FullMethodName,
		streamv1.FrontgateLink_Connect_FullMethodName,
	}
}

func isNoTokenMethod(method string) bool {
	for _, m := range NoTokenMethods() {
		if m == method {
			return true
		}
	}
	return false
}

// Methods returns the rule of every API method that needs a token. A fresh
// map each call: callers may extend their copy.
func Methods() map[string]Rule {
	viewer := Rule{Role: pilotv1.Role_ROLE_VIEWER}
	change := Rule{Role: pilotv1.Role_ROLE_MEMBER, Mutates: true}
	admin := Rule{Role: pilotv1.Role_ROLE_ADMIN}
	adminChange := Rule{Role: pilotv1.Role_ROLE_ADMIN, Mutates: true}
	platform := Rule{Role: pilotv1.Role_ROLE_ADMIN, DefaultTenantOnly: true}
	platformChange := Rule{Role: pilotv1.Role_ROLE_ADMIN, Mutates: true, DefaultTenantOnly: true}
	return map[string]Rule{
		pilotv1.AppService_PushApp_FullMethodName:    change,
		pilotv1.AppService_ListApps_FullMethodName:   viewer,
		pilotv1.AppService_GetApp_FullMethodName:     viewer,
		pilotv1.AppService_DeleteApp_FullMethodName:  change,
		pilotv1.AppService_SetImage_FullMethodName:   change,
		pilotv1.AppService_ListImages_FullMethodName: viewer,
		pilotv1.AppService_UnsetImage_FullMethodName: change,

		pilotv1.RuntimeService_CreateRuntime_FullMethodName: change,
		pilotv1.RuntimeService_ListRuntimes_FullMethodName:  viewer,
		pilotv1.RuntimeService_GetRuntime_FullMethodName:    viewer,

		pilotv1.ClusterService_CreateCluster_FullMethodName:     change,
		pilotv1.ClusterService_ListClusters_FullMethodName:      viewer,
		pilotv1.ClusterService_GetCluster_FullMethodName:        viewer,
		pilotv1.ClusterService_DeleteCluster_FullMethodName:     change,
		pilotv1.ClusterService_UpdateClusterEnv_FullMethodName:  change,
		pilotv1.ClusterService_RestartCluster_FullMethodName:    change,
		pilotv1.ClusterService_ScaleCluster_FullMethodName:      change,
		pilotv1.ClusterService_RecoverCluster_FullMethodName:    change,
		pilotv1.ClusterService_RunClusterService_FullMethodName: change,
		pilotv1.ClusterService_RunClusterTab_FullMethodName:     change,
		pilotv1.ClusterService_StopCluster_FullMethodName:       change,
		pilotv1.ClusterService_StartCluster_FullMethodName:      change,
		pilotv1.ClusterService_ResizeCluster_FullMethodName:     change,
		pilotv1.ClusterService_BackupCluster_FullMethodName:     change,
		pilotv1.ClusterService_ListBackups_FullMethodName:       viewer,
		pilotv1.ClusterService_RestoreCluster_FullMethodName:    change,
		pilotv1.ClusterService_UpgradeCluster_FullMethodName:    change,
		pilotv1.ClusterService_RollbackCluster_FullMethodName:   change,

		pilotv1.ClusterService_ListClusterEvents_FullMethodName:     viewer,
		pilotv1.ClusterService_GetClusterMetrics_FullMethodName:     viewer,
		pilotv1.ClusterService_SetClusterRecovery_FullMethodName:    change,
		pilotv1.ClusterService_SetAutoscalePolicy_FullMethodName:    change,
		pilotv1.ClusterService_DeleteAutoscalePolicy_FullMethodName: change,
		pilotv1.JobService_GetJob_FullMethodName:                    viewer,
		pilotv1.JobService_ListJobs_FullMethodName:                  viewer,
		pilotv1.JobService_WatchJob_FullMethodName:                  viewer,
		pilotv1.JobService_ListNodeResults_FullMethodName:           viewer,
		pilotv1.JobService_CancelJob_FullMethodName:                 change,
		pilotv1.JobService_RetryJob_FullMethodName:                  change,

		pilotv1.UserService_CreateUser_FullMethodName: adminChange,
		pilotv1.UserService_ListUsers_FullMethodName:  admin,
		pilotv1.UserService_DeleteUser_FullMethodName: adminChange,
		pilotv1.UserService_WhoAmI_FullMethodName:     viewer,

		pilotv1.AuditService_ListAudit_FullMethodName: admin,

		pilotv1.SecurityService_Revoke_FullMethodName:          platformChange,
		pilotv1.SecurityService_ListRevocations_FullMethodName: platform,
	}
}
