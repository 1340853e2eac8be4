/*-------------------------------------------------------------------------
 *
 * pcqual.c
 *	  Module initialisation and the pcqual.* settings.
 *
 * Nothing here touches libcurl: _PG_init may run in the postmaster when the
 * library is preloaded, and curl's global state must not be inherited across
 * fork().  http.c initialises curl lazily in the backend that needs it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "pcqual.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

typedef enum PcqCloud
{
	PCQ_CLOUD_GLOBAL,
	PCQ_CLOUD_CHINA
} PcqCloud;

static const struct config_enum_entry cloud_options[] = {
	{"global", PCQ_CLOUD_GLOBAL, false},
	{"china", PCQ_CLOUD_CHINA, false},
	{NULL, 0, false}
};

/* Endpoints of each cloud, indexed by PcqCloud. */
static const char *const cloud_base_urls[] = {
	"https://api.partnercenter.microsoft.com",
	"https://partner.partnercenterapi.microsoftonline.cn"
};
static const char *const cloud_authorities[] = {
	"https://login.microsoftonline.com",
	"https://login.chinacloudapi.cn"
};

static int	pcq_cloud = PCQ_CLOUD_GLOBAL;
char	   *pcq_base_url_setting = NULL;
char	   *pcq_authority_setting = NULL;
char	   *pcq_resource = NULL;
char	   *pcq_partner_tenant = NULL;
char	   *pcq_client_id = NULL;
char	   *pcq_client_secret = NULL;
char	   *pcq_refresh_token = NULL;
char	   *pcq_static_access_token = NULL;
bool		pcq_allow_http = false;
char	   *pcq_ca_file = NULL;
int			pcq_timeout_ms = 30000;
int			pcq_connect_timeout_ms = 5000;
char	   *pcq_correlation_id_setting = NULL;
char	   *pcq_application_name = NULL;
int			pcq_max_response_size = 1024 * 1024;
int			pcq_max_retries = 3;
int			pcq_max_retry_wait_ms = 60000;
int			pcq_concurrency = 16;

/* The API base URL in force: the setting, or the cloud's default. */
const char *
pcq_base_url(void)
{
	if (pcq_base_url_setting != NULL && pcq_base_url_setting[0] != '\0')
		return pcq_base_url_setting;
	return cloud_base_urls[pcq_cloud];
}

/* The token authority in force: the setting, or the cloud's default. */
const char *
pcq_authority(void)
{
	if (pcq_authority_setting != NULL && pcq_authority_setting[0] != '\0')
		return pcq_authority_setting;
	return cloud_authorities[pcq_cloud];
}

static const char *
show_base_url(void)
{
	return pcq_base_url();
}

static const char *
show_authority(void)
{
	return pcq_authority();
}

/*
 * Secrets never leave the server through SHOW or pg_settings, not even to a
 * superuser: they would end up in screenshots, logs and support tickets.
 */
static const char *
show_secret(const char *value)
{
	return (value == NULL || value[0] == '\0') ? "" : "********";
}

static const char *
show_client_secret(void)
{
	return show_secret(pcq_client_secret);
}

static const char *
show_refresh_token(void)
{
	return show_secret(pcq_refresh_token);
}

static const char *
show_access_token(void)
{
	return show_secret(pcq_static_access_token);
}

/*
 * Values that end up in a URL or an HTTP header must not smuggle in a line
 * break or other control character (header injection).
 */
static bool
check_header_safe(char **newval, void **extra, GucSource source)
{
	const unsigned char *p;

	if (*newval == NULL)
		return true;
	for (p = (const unsigned char *) *newval; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The value contains a control character.");
			return false;
		}
	}
	return true;
}

static bool
check_url(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (!check_header_safe(newval, extra, source))
		return false;
	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
	{
		GUC_check_errdetail("The URL must start with https:// (or http:// with pcqual.allow_http).");
		return false;
	}
	if (strchr(v, ' ') != NULL || strchr(v, '?') != NULL || strchr(v, '#') != NULL)
	{
		GUC_check_errdetail("The URL must be a bare base URL, without spaces, query or fragment.");
		return false;
	}
	return true;
}

/* Accept an empty value or a GUID such as 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745. */
static bool
check_guid(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	int			i;

	if (v == NULL || v[0] == '\0')
		return true;
	for (i = 0; i < PCQ_GUID_SIZE - 1; i++)
	{
		bool		dash = (i == 8 || i == 13 || i == 18 || i == 23);

		if (v[i] == '\0' || (dash ? v[i] != '-' : !isxdigit((unsigned char) v[i])))
			break;
	}
	if (i != PCQ_GUID_SIZE - 1 || v[i] != '\0')
	{
		GUC_check_errdetail("The value must be empty or a GUID such as 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745.");
		return false;
	}
	return true;
}

static void
define_superuser_string(const char *name, const char *desc, char **var,
						const char *boot, GucStringCheckHook check,
						GucShowHook show, int flags)
{
	DefineCustomStringVariable(name, desc, NULL, var, boot, PGC_SUSET,
							   flags, check, NULL, show);
}

static void
define_secret(const char *name, const char *desc, char **var, GucShowHook show)
{
	define_superuser_string(name, desc, var, "", check_header_safe, show,
							GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							GUC_NOT_IN_SAMPLE);
}

static void
define_endpoint_settings(void)
{
	DefineCustomEnumVariable("pcqual.cloud",
							 "Partner Center cloud whose default endpoints are used: global or china.",
							 NULL, &pcq_cloud, PCQ_CLOUD_GLOBAL, cloud_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	define_superuser_string("pcqual.base_url",
							"Partner Center API base URL; empty means the cloud's default.",
							&pcq_base_url_setting, "", check_url, show_base_url, 0);
	define_superuser_string("pcqual.authority",
							"Azure AD authority for tokens; empty means the cloud's default.",
							&pcq_authority_setting, "", check_url, show_authority, 0);
	define_superuser_string("pcqual.resource",
							"Resource (audience) that access tokens are requested for.",
							&pcq_resource, "https://api.partnercenter.microsoft.com",
							check_header_safe, NULL, 0);
	DefineCustomBoolVariable("pcqual.allow_http",
							 "Permits plain http:// URLs, for local emulators only.",
							 NULL, &pcq_allow_http, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	define_superuser_string("pcqual.ca_file",
							"File of CA certificates to trust instead of the system's.",
							&pcq_ca_file, "", NULL, NULL, 0);
}

static void
define_credential_settings(void)
{
	define_superuser_string("pcqual.partner_tenant",
							"The partner's Azure AD tenant (id or domain) that tokens are requested from.",
							&pcq_partner_tenant, "", check_header_safe, NULL, 0);
	define_superuser_string("pcqual.client_id",
							"Application (client) id of the partner's Azure AD app.",
							&pcq_client_id, "", check_header_safe, NULL, 0);
	define_secret("pcqual.client_secret",
				  "Client secret of the partner's Azure AD app (App-only and App+User).",
				  &pcq_client_secret, show_client_secret);
	define_secret("pcqual.refresh_token",
				  "Refresh token for App+User authentication.",
				  &pcq_refresh_token, show_refresh_token);
	define_secret("pcqual.access_token",
				  "An externally managed access token, sent as is.",
				  &pcq_static_access_token, show_access_token);
}

static void
define_request_settings(void)
{
	DefineCustomIntVariable("pcqual.timeout",
							"Longest time one HTTP request may take.",
							NULL, &pcq_timeout_ms, 30000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.connect_timeout",
							"Longest time connecting to a server may take.",
							NULL, &pcq_connect_timeout_ms, 5000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("pcqual.correlation_id",
							   "MS-CorrelationId sent with every request; empty means a new GUID per statement.",
							   NULL, &pcq_correlation_id_setting, "",
							   PGC_USERSET, 0, check_guid, NULL, NULL);
	DefineCustomStringVariable("pcqual.application_name",
							   "Sent as the MS-PartnerCenter-Application header.",
							   NULL, &pcq_application_name, "pcqual",
							   PGC_USERSET, 0, check_header_safe, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_response_size",
							"Largest response body accepted; a larger one is cut off while it downloads.",
							NULL, &pcq_max_response_size, 1024 * 1024, 1024, MaxAllocSize - 1,
							PGC_USERSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_retries",
							"Times a throttled or failed request is sent again.",
							NULL, &pcq_max_retries, 3, 0, 10,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_retry_wait",
							"Longest single wait before a retry; a longer Retry-After fails at once.",
							NULL, &pcq_max_retry_wait_ms, 60000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.concurrency",
							"Most requests in flight at once for one bulk call.",
							NULL, &pcq_concurrency, 16, 1, 256,
							PGC_USERSET, 0, NULL, NULL, NULL);
}

void
_PG_init(void)
{
	define_endpoint_settings();
	define_credential_settings();
	define_request_settings();
	MarkGUCPrefixReserved("pcqual");
}
