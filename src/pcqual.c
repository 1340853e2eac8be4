/*-------------------------------------------------------------------------
 *
 * pcqual.c
 *	  Module initialisation and the pcqual.* settings.
 *
 * pcqual must be in shared_preload_libraries.  Its settings then exist from
 * the first moment of every session, so PostgreSQL never keeps a pcqual.*
 * value as a placeholder that any role could read, and every superuser-only
 * setting is refused to other roles at SET, in PGOPTIONS and in ALTER
 * ROLE/DATABASE ... SET.  Secrets are never setting values at all: settings
 * name private files (credentials.c reads them).
 *
 * Nothing here touches libcurl: _PG_init runs in the postmaster, and curl's
 * global state must not be inherited across fork().  http.c initialises curl
 * lazily in the backend that needs it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "compat.h"
#include "pcqual.h"

PCQ_MODULE_MAGIC;

void		_PG_init(void);

typedef enum PcqCloud
{
	PCQ_CLOUD_GLOBAL,
	PCQ_CLOUD_USGOV,
	PCQ_CLOUD_CHINA
} PcqCloud;

static const struct config_enum_entry cloud_options[] = {
	{"global", PCQ_CLOUD_GLOBAL, false},
	{"usgov", PCQ_CLOUD_USGOV, false},
	{"china", PCQ_CLOUD_CHINA, false},
	{NULL, 0, false}
};

/* Endpoints of each cloud, indexed by PcqCloud. */
static const char *const cloud_base_urls[] = {
	"https://api.partnercenter.microsoft.com",
	"https://api.partnercenter.microsoft.com",
	"https://partner.partnercenterapi.microsoftonline.cn"
};
static const char *const cloud_authorities[] = {
	"https://login.microsoftonline.com",
	"https://login.microsoftonline.us",
	"https://login.chinacloudapi.cn"
};

/* The settings that held secrets before 1.2; always empty. */
static char *retired_client_secret = NULL;
static char *retired_refresh_token = NULL;
static char *retired_access_token = NULL;

static int	pcq_cloud = PCQ_CLOUD_GLOBAL;
static char *pcq_base_url_setting = NULL;
static char *pcq_authority_setting = NULL;
char	   *pcq_resource = NULL;
char	   *pcq_partner_tenant = NULL;
char	   *pcq_client_id = NULL;
char	   *pcq_client_secret_file = NULL;
char	   *pcq_client_certificate_file = NULL;
char	   *pcq_client_key_file = NULL;
char	   *pcq_refresh_token_file = NULL;
char	   *pcq_access_token_file = NULL;
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
int			pcq_max_idle_connections = 64;
bool		pcq_cluster_governor = true;
int			pcq_max_cluster_concurrency = 64;
int			pcq_max_shared_tokens = 16;
char	   *pcq_proxy = NULL;
char	   *pcq_no_proxy = NULL;
bool		pcq_batch_lateral = true;
int			pcq_lateral_batch_size = 1000;
int			pcq_expected_latency_ms = 100;

bool
pcq_is_set(const char *setting)
{
	return setting != NULL && setting[0] != '\0';
}

/* The API base URL in force: the setting, or the cloud's default. */
static const char *
base_url(void)
{
	if (pcq_is_set(pcq_base_url_setting))
		return pcq_base_url_setting;
	return cloud_base_urls[pcq_cloud];
}

/* The token authority in force: the setting, or the cloud's default. */
static const char *
authority(void)
{
	if (pcq_is_set(pcq_authority_setting))
		return pcq_authority_setting;
	return cloud_authorities[pcq_cloud];
}

/* A base URL without its trailing slashes, so that a path can follow. */
static void
append_trimmed_base(StringInfo buf, const char *base)
{
	size_t		len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	appendBinaryStringInfo(buf, base, len);
}

/* The API URL of a path such as "/v1/customers". */
char *
pcq_api_url(const char *path)
{
	StringInfoData url;

	initStringInfo(&url);
	append_trimmed_base(&url, base_url());
	appendStringInfoString(&url, path);
	return url.data;
}

/* {authority}/{partner tenant}/oauth2/token */
char *
pcq_token_url(void)
{
	StringInfoData url;

	initStringInfo(&url);
	append_trimmed_base(&url, authority());
	appendStringInfoChar(&url, '/');
	pcq_append_percent_encoded(&url, pcq_partner_tenant);
	appendStringInfoString(&url, "/oauth2/token");
	return url.data;
}

/*
 * RFC 3986's unreserved characters.  ASCII ranges, not isalnum(): the
 * result must not depend on the locale.
 */
bool
pcq_is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Percent-encoding of everything but the unreserved characters. */
void
pcq_append_percent_encoded(StringInfo buf, const char *value)
{
	const unsigned char *p;

	for (p = (const unsigned char *) value; *p; p++)
	{
		if (pcq_is_unreserved(*p))
			appendStringInfoChar(buf, (char) *p);
		else
			appendStringInfo(buf, "%%%02X", *p);
	}
}

static const char *
show_base_url(void)
{
	return base_url();
}

static const char *
show_authority(void)
{
	return authority();
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
	if (strpbrk(v, " ?#") != NULL)
	{
		GUC_check_errdetail("The URL must be a bare base URL, without spaces, query or fragment.");
		return false;
	}
	return true;
}

/*
 * A proxy URL: http://, https:// or socks5h:// (the proxy resolves names, so
 * the backend's resolver never sees them), a host, and nothing that holds a
 * secret.  curl would send a user name and password in the URL to the proxy
 * as Proxy-Authorization; in a setting they would be visible to other roles
 * and in the server log, so they are refused without quoting the value.
 */
static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	static const char *const schemes[] = {"http://", "https://", "socks5h://"};
	const char *v = *newval;
	const char *host = NULL;
	size_t		host_len;
	int			i;

	if (!check_header_safe(newval, extra, source))
		return false;
	if (v == NULL || v[0] == '\0')
		return true;
	for (i = 0; i < lengthof(schemes); i++)
	{
		if (pg_strncasecmp(v, schemes[i], strlen(schemes[i])) == 0)
			host = v + strlen(schemes[i]);
	}
	if (host == NULL)
	{
		GUC_check_errdetail("The proxy URL must start with http://, https:// or socks5h://.");
		return false;
	}
	host_len = strcspn(host, "/");
	if (memchr(host, '@', host_len) != NULL)
	{
		GUC_check_errmsg("pcqual.proxy must not hold a user name or password: the value was refused");
		GUC_check_errdetail("A secret in a setting is exposed to other roles, to pg_file_settings and to the server log; pcqual does not support proxy authentication.");
		GUC_check_errhint("Use a proxy that authorises the database server by its address, and set pcqual.proxy to its URL without credentials, such as http://proxy.example.com:3128.");
		return false;
	}
	if (host_len == 0 || host[0] == ':' || strpbrk(v, " ?#") != NULL)
	{
		GUC_check_errdetail("The proxy URL must name a host, as in http://proxy.example.com:3128, without spaces, query or fragment.");
		return false;
	}
	return true;
}

bool
pcq_is_guid(const char *v)
{
	int			i;

	for (i = 0; i < PCQ_GUID_SIZE - 1; i++)
	{
		bool		dash = (i == 8 || i == 13 || i == 18 || i == 23);

		if (v[i] == '\0' || (dash ? v[i] != '-' : !isxdigit((unsigned char) v[i])))
			return false;
	}
	return v[i] == '\0';
}

/* Accept an empty value or a GUID such as 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745. */
static bool
check_guid(char **newval, void **extra, GucSource source)
{
	if (!pcq_is_set(*newval) || pcq_is_guid(*newval))
		return true;
	GUC_check_errdetail("The value must be empty or a GUID such as 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745.");
	return false;
}

/*
 * A DNS name: dot-separated labels of ASCII letters, digits and inner
 * hyphens.  Nothing else can form a path segment of the sign-in URL, so ".."
 * or "a/b" cannot climb out of it.
 */
static bool
is_domain_name(const char *v)
{
	size_t		label = 0;
	const char *p;

	if (strlen(v) > 253)
		return false;
	for (p = v; *p; p++)
	{
		if (*p == '.')
		{
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
		}
		else if (isalnum((unsigned char) *p) && (unsigned char) *p < 0x80)
			label++;
		else if (*p == '-' && label > 0)
			label++;
		else
			return false;
		if (label > 63)
			return false;
	}
	return label > 0 && p[-1] != '-';
}

static bool
check_partner_tenant(char **newval, void **extra, GucSource source)
{
	if (!pcq_is_set(*newval) || pcq_is_guid(*newval) || is_domain_name(*newval))
		return true;
	GUC_check_errdetail("The partner tenant must be a GUID or a domain name such as contoso.onmicrosoft.com.");
	return false;
}

/*
 * The retired secret settings accept only an empty value.  The message
 * never quotes the value: it is a secret that should not have been there.
 */
static bool
refuse_retired_secret(const char *value, const char *setting,
					  const char *replacement)
{
	if (!pcq_is_set(value))
		return true;
	/* the setting's name tells the DBA which line to remove; never the value */
	GUC_check_errmsg("%s no longer takes a secret as its value: the value was ignored",
					 setting);
	GUC_check_errdetail("A secret in a setting is exposed to other roles, to pg_file_settings and to the server log.");
	GUC_check_errhint("Write the secret to a file that only the server's operating system user can read (chmod 600), set %s to its path, and remove this setting.",
					  replacement);
	return false;
}

static bool
check_retired_client_secret(char **newval, void **extra, GucSource source)
{
	return refuse_retired_secret(*newval, "pcqual.client_secret", "pcqual.client_secret_file");
}

static bool
check_retired_refresh_token(char **newval, void **extra, GucSource source)
{
	return refuse_retired_secret(*newval, "pcqual.refresh_token", "pcqual.refresh_token_file");
}

static bool
check_retired_access_token(char **newval, void **extra, GucSource source)
{
	return refuse_retired_secret(*newval, "pcqual.access_token", "pcqual.access_token_file");
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
define_endpoint_settings(void)
{
	DefineCustomEnumVariable("pcqual.cloud",
							 gettext_noop("Partner Center cloud whose default endpoints are used: global, usgov or china."),
							 NULL, &pcq_cloud, PCQ_CLOUD_GLOBAL, cloud_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	define_superuser_string("pcqual.base_url",
							gettext_noop("Partner Center API base URL; empty means the cloud's default."),
							&pcq_base_url_setting, "", check_url, show_base_url, 0);
	define_superuser_string("pcqual.authority",
							gettext_noop("Azure AD authority for tokens; empty means the cloud's default."),
							&pcq_authority_setting, "", check_url, show_authority, 0);
	define_superuser_string("pcqual.resource",
							gettext_noop("Resource (audience) that access tokens are requested for."),
							&pcq_resource, "https://api.partnercenter.microsoft.com",
							check_header_safe, NULL, 0);
	DefineCustomBoolVariable("pcqual.allow_http",
							 gettext_noop("Permits plain http:// URLs, for local emulators only."),
							 NULL, &pcq_allow_http, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	define_superuser_string("pcqual.ca_file",
							gettext_noop("File of CA certificates to trust instead of the system's."),
							&pcq_ca_file, "", NULL, NULL, 0);
	define_superuser_string("pcqual.proxy",
							gettext_noop("Proxy that every request goes through (http://, https:// or socks5h://); empty means none, whatever the environment says."),
							&pcq_proxy, "", check_proxy, NULL, 0);
	define_superuser_string("pcqual.no_proxy",
							gettext_noop("Comma-separated hosts that are reached without pcqual.proxy."),
							&pcq_no_proxy, "", check_header_safe, NULL, 0);
}

static void
define_credential_file(const char *name, const char *desc, char **var)
{
	define_superuser_string(name, desc, var, "", NULL, NULL, GUC_SUPERUSER_ONLY);
}

static void
define_retired_secret(const char *name, char **var, GucStringCheckHook check)
{
	define_superuser_string(name,
							"Retired: secrets come from files (see the matching _file setting).",
							var, "", check, NULL,
							GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE);
}

static void
define_credential_settings(void)
{

	define_superuser_string("pcqual.partner_tenant",
							gettext_noop("The partner's Azure AD tenant (GUID or domain name) that tokens are requested from."),
							&pcq_partner_tenant, "", check_partner_tenant, NULL, 0);
	define_superuser_string("pcqual.client_id",
							gettext_noop("Application (client) id of the partner's Azure AD app."),
							&pcq_client_id, "", check_header_safe, NULL, 0);
	define_credential_file("pcqual.client_secret_file",
						   gettext_noop("File holding the Azure AD app's client secret (App-only)."),
						   &pcq_client_secret_file);
	define_credential_file("pcqual.client_certificate_file",
						   gettext_noop("PEM file of the certificate registered with the Azure AD app (App-only with a certificate)."),
						   &pcq_client_certificate_file);
	define_credential_file("pcqual.client_key_file",
						   gettext_noop("PEM file of the private key of pcqual.client_certificate_file."),
						   &pcq_client_key_file);
	define_credential_file("pcqual.refresh_token_file",
						   gettext_noop("File holding the refresh token for App+User; pcqual writes rotated tokens back to it."),
						   &pcq_refresh_token_file);
	define_credential_file("pcqual.access_token_file",
						   gettext_noop("File holding an externally managed access token, re-read when it changes."),
						   &pcq_access_token_file);
	define_retired_secret("pcqual.client_secret", &retired_client_secret,
						  check_retired_client_secret);
	define_retired_secret("pcqual.refresh_token", &retired_refresh_token,
						  check_retired_refresh_token);
	define_retired_secret("pcqual.access_token", &retired_access_token,
						  check_retired_access_token);
}

static void
define_request_settings(void)
{
	DefineCustomIntVariable("pcqual.timeout",
							gettext_noop("Longest time one HTTP request may take."),
							NULL, &pcq_timeout_ms, 30000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.connect_timeout",
							gettext_noop("Longest time connecting to a server may take."),
							NULL, &pcq_connect_timeout_ms, 5000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("pcqual.correlation_id",
							   gettext_noop("MS-CorrelationId sent with every request; empty means a new GUID per statement."),
							   NULL, &pcq_correlation_id_setting, "",
							   PGC_USERSET, 0, check_guid, NULL, NULL);
	DefineCustomStringVariable("pcqual.application_name",
							   gettext_noop("Sent as the MS-PartnerCenter-Application header."),
							   NULL, &pcq_application_name, "pcqual",
							   PGC_USERSET, 0, check_header_safe, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_response_size",
							gettext_noop("Largest response body accepted; a larger one is cut off while it downloads."),
							NULL, &pcq_max_response_size, 1024 * 1024, 1024, MaxAllocSize - 1,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_retries",
							gettext_noop("Times a throttled or failed request is sent again."),
							NULL, &pcq_max_retries, 3, 0, 10,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_retry_wait",
							gettext_noop("Longest single wait before a retry; a longer Retry-After fails at once."),
							NULL, &pcq_max_retry_wait_ms, 60000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.concurrency",
							gettext_noop("Most requests in flight at once for one bulk call."),
							NULL, &pcq_concurrency, 16, 1, 256,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_idle_connections",
							gettext_noop("Most idle connections a session keeps open for reuse."),
							NULL, &pcq_max_idle_connections, 64, 0, 1024,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* What the backends of the cluster share: shmem.c, governor.c. */
static void
define_cluster_settings(void)
{
	DefineCustomBoolVariable("pcqual.cluster_governor",
							 gettext_noop("Makes every backend's requests to one partner share one in-flight limit and one Retry-After pause."),
							 "Off, each call adapts to throttling on its own, as pcqual 1.2 did.",
							 &pcq_cluster_governor, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_cluster_concurrency",
							gettext_noop("Most requests in flight to one partner from the whole cluster."),
							"pcqual.concurrency still caps each call.",
							&pcq_max_cluster_concurrency, 64, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.max_shared_tokens",
							gettext_noop("Credentials whose access tokens the cluster keeps in shared memory."),
							"Each also sizes two entries of the governor.",
							&pcq_max_shared_tokens, 16, 1, 1000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

/* The batched LATERAL join (lateral.c): whether, how, and its costing. */
static void
define_planner_settings(void)
{
	DefineCustomBoolVariable("pcqual.batch_lateral",
							 gettext_noop("Lets the planner batch the outer side of a LATERAL join with pc_qualifications(uuid)."),
							 "Off, the join is a Nested Loop that sends one request per outer row, one after another.",
							 &pcq_batch_lateral, true, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.lateral_batch_size",
							gettext_noop("Outer rows the batched LATERAL join reads before it fetches their customers."),
							NULL, &pcq_lateral_batch_size, 1000, 1, 100000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pcqual.expected_latency",
							gettext_noop("Time one Partner Center request is expected to take, for the planner's costs."),
							"One cost unit per millisecond, per request; concurrent requests of a batch overlap.",
							&pcq_expected_latency_ms, 100, 0, 600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
}

void
_PG_init(void)
{
	/*
	 * pg_upgrade loads every library the old cluster's functions name, in
	 * a server started for it alone (binary-upgrade mode), to check that it
	 * exists: nothing of pcqual runs there, and the new cluster need not
	 * preload it yet.  pg_cron does the same.
	 */
	if (IsBinaryUpgrade)
		return;

	/*
	 * Loaded any other way, a session could already hold pcqual.* values as
	 * placeholders that every role can read and set.  Refuse before
	 * defining anything, as pg_cron does.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pcqual must be loaded via shared_preload_libraries"),
				 errdetail("Loaded later, its settings would exist as placeholders that any role could read and set."),
				 errhint("Add pcqual to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'pcqual'), then restart the server.")));

	define_endpoint_settings();
	define_credential_settings();
	define_request_settings();
	define_cluster_settings();
	define_planner_settings();
	MarkGUCPrefixReserved("pcqual");
	pcq_shmem_install();
	pcq_lateral_install();
}
