/*-------------------------------------------------------------------------
 *
 * pcqual.h
 *	  Declarations shared between the pcqual source files.
 *
 * pcqual.c		module initialisation and settings
 * shmem.c		shared memory: asked for at start, laid out by its owners
 * governor.c	the cluster-wide in-flight limit and Retry-After pause
 * token_cache.c	access tokens shared by the cluster, one per credential
 * stats.c		pc_stat's counters, per endpoint
 * activity.c	pc_stat_activity's rows: each backend's call in progress
 * credentials.c	secrets from private files; refresh-token write-back
 * assertion.c	signed client assertions (JWT) for certificate credentials
 * http.c		transport: libcurl's multi interface on one epoll set
 * retry.c		when a failed request is sent again
 * token.c		Azure AD access tokens, one per credential
 * parse.c		response bodies: qualifications, customers, validation
 *				codes, error bodies, token answers
 * report.c		turning a failed request into an ERROR or WARNING
 * functions.c	the read functions (pc_qualifications, pc_disconnect)
 * write.c		pc_create_qualification
 * discover.c	pc_customers and pc_validation_codes
 * lateral.c	the batched LATERAL join over pc_qualifications(uuid)
 *
 * Layering, lowest first: settings; shared memory (governor, token cache,
 * stats, activity); parse, retry, credentials, assertion; http, report;
 * token; the SQL functions.  Nothing calls upwards.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PCQUAL_H
#define PCQUAL_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/*
 * The extension's version, pcqual.control's default_version: the Makefile
 * passes it as -DPCQUAL_VERSION="...", so that it is written in one place.
 */
#ifndef PCQUAL_VERSION
#error "PCQUAL_VERSION is not defined: build with the Makefile, which takes it from pcqual.control"
#endif

/* A GUID in its 36-character text form, plus the terminator. */
#define PCQ_GUID_SIZE 37

/* Longest text from the service that is quoted in a message. */
#define PCQ_MAX_QUOTED_TEXT 300

/* A token is not used within this many seconds of its expiry. */
#define PCQ_TOKEN_EXPIRY_MARGIN_SECS 300

/* ---- settings (pcqual.c) ---- */
extern char *pcq_resource;
extern char *pcq_partner_tenant;
extern char *pcq_client_id;
extern char *pcq_client_secret_file;
extern char *pcq_client_certificate_file;
extern char *pcq_client_key_file;
extern char *pcq_refresh_token_file;
extern char *pcq_access_token_file;
extern bool pcq_allow_http;
extern char *pcq_ca_file;
extern int	pcq_timeout_ms;
extern int	pcq_connect_timeout_ms;
extern char *pcq_correlation_id_setting;
extern char *pcq_application_name;
extern int	pcq_max_response_size;
extern int	pcq_max_retries;
extern int	pcq_max_retry_wait_ms;
extern int	pcq_concurrency;
extern int	pcq_max_idle_connections;
extern bool pcq_cluster_governor;
extern int	pcq_max_cluster_concurrency;
extern int	pcq_max_shared_tokens;
extern char *pcq_proxy;
extern char *pcq_no_proxy;
extern bool pcq_batch_lateral;
extern int	pcq_lateral_batch_size;
extern int	pcq_expected_latency_ms;

extern bool pcq_is_set(const char *setting);
extern bool pcq_is_guid(const char *text);
extern char *pcq_api_url(const char *path);
extern char *pcq_token_url(void);
extern bool pcq_is_unreserved(unsigned char c);
extern void pcq_append_percent_encoded(StringInfo buf, const char *value);

/* ---- private files (credentials.c) ---- */

/* Which file is at a path: compared field by field. */
typedef struct PcqFileStamp
{
	bool		exists;
	uint64		dev;
	uint64		ino;
	int64		size;
	int64		mtime_sec;
	int64		mtime_nsec;
} PcqFileStamp;

extern char *pcq_read_private_file(const char *path, const char *setting);
extern void pcq_wipe_and_free(char **p);

typedef struct PcqLockedFile PcqLockedFile;
extern PcqLockedFile *pcq_lock_private_file(const char *path, const char *setting);
extern char *pcq_locked_file_contents(PcqLockedFile *file);
extern bool pcq_replace_locked_file(PcqLockedFile *file, const char *contents);
extern void pcq_unlock_private_file(PcqLockedFile *file);
extern void pcq_file_stamp(const char *path, PcqFileStamp *stamp);
extern bool pcq_same_file_stamp(const PcqFileStamp *a, const PcqFileStamp *b);
extern bool pcq_file_changed_since(const char *path, PcqFileStamp *stamp);

/* ---- shared memory (shmem.c) ---- */
struct LWLock;
extern void pcq_shmem_install(void);
extern void pcq_require_shared_memory(bool present);

/* ---- the cluster-wide governor (governor.c) ---- */

/* A backend's place at one partner's entry, for one batch; opaque. */
typedef struct PcqGovernorSeat PcqGovernorSeat;

/*
 * One slot held: the partner's in-flight count with it, the window it was
 * taken under, and since when.
 */
typedef struct PcqSlot
{
	int			depth;
	int			window;
	TimestampTz started;
} PcqSlot;

typedef enum PcqSlotOutcome
{
	PCQ_SLOT_UNUSED,			/* given back without a request sent */
	PCQ_SLOT_ANSWERED,			/* the service answered, not with a 429 */
	PCQ_SLOT_THROTTLED,			/* 429 */
	PCQ_SLOT_FAILED				/* no answer */
} PcqSlotOutcome;

extern Size pcq_governor_shmem_size(void);
extern void pcq_governor_shmem_init(struct LWLock *lock);
extern PcqGovernorSeat *pcq_governor_join(bool token_endpoint);
extern bool pcq_governor_acquire(PcqGovernorSeat *seat, PcqSlot *slot,
								 TimestampTz *paused_until);
extern void pcq_governor_release(PcqGovernorSeat *seat, const PcqSlot *slot,
								 PcqSlotOutcome outcome, long pause_ms);
extern void pcq_governor_leave(PcqGovernorSeat *seat);
extern int	pcq_governor_window(PcqGovernorSeat *seat);

/* ---- shared access tokens (token_cache.c) ---- */

/* Longest access token shared (Azure AD's are 1 to 4 kB). */
#define PCQ_MAX_TOKEN_SIZE 16384
#define PCQ_CREDENTIAL_HASH_LEN 32
#define PCQ_CREDENTIAL_FILES 4

typedef struct PcqTokenKey
{
	uint8		hash[PCQ_CREDENTIAL_HASH_LEN];	/* SHA-256 of the settings */
	PcqFileStamp files[PCQ_CREDENTIAL_FILES];	/* the credential files now */
} PcqTokenKey;

typedef enum PcqTokenLookup
{
	PCQ_TOKEN_HIT,				/* a usable token was copied */
	PCQ_TOKEN_REFRESH,			/* this backend must ask Azure AD */
	PCQ_TOKEN_FAILED			/* the request waited for failed */
} PcqTokenLookup;

typedef struct PcqTokenFailure
{
	int			sqlstate;
	int			pid;
	char		message[512];
} PcqTokenFailure;

extern Size pcq_token_cache_shmem_size(void);
extern void pcq_token_cache_shmem_init(struct LWLock *lock);
extern PcqTokenLookup pcq_token_cache_get(const PcqTokenKey *key, char *buf,
										  uint64 *generation,
										  PcqTokenFailure *failure);
extern void pcq_token_cache_put(const PcqTokenKey *key, const char *token,
								double expires_in, uint64 *generation);
extern void pcq_token_cache_abandon(int sqlstate, const char *message);
extern bool pcq_token_cache_invalidate(const uint8 *hash, uint64 generation);

/* A credential's entry, as pc_credential_status shows it. */
typedef struct PcqTokenCacheState
{
	bool		has_token;
	TimestampTz expires_at;		/* when it is no longer used */
	TimestampTz last_request_at;	/* 0: no request yet */
	bool		last_request_ok;
	PcqTokenFailure last_failure;	/* when !last_request_ok */
} PcqTokenCacheState;

extern bool pcq_token_cache_describe(const uint8 *hash, PcqTokenCacheState *state,
									 char *token_buf);

/* ---- progress of the call in progress (activity.c) ---- */
extern Size pcq_activity_shmem_size(void);
extern void pcq_activity_shmem_init(void);
extern void pcq_activity_begin(const char *function, int64 customers_total);
extern void pcq_activity_end(void);
struct FunctionCallInfoBaseData;
extern void pcq_activity_run(const char *function, int64 customers_total,
							 void (*body) (struct FunctionCallInfoBaseData *fcinfo),
							 struct FunctionCallInfoBaseData *fcinfo);
extern void pcq_activity_customers(int64 done, int64 failed);
extern void pcq_activity_in_flight(int in_flight, int window);
extern void pcq_activity_retry(void);
extern void pcq_activity_throttled(void);
extern void pcq_activity_waiting(TimestampTz until);

/* ---- client assertions (assertion.c) ---- */
extern char *pcq_client_assertion(const char *audience);

/* pcqual.client_certificate_file, described (never the key). */
typedef struct PcqCertificateInfo
{
	char	   *subject;		/* RFC 2253 */
	char	   *thumbprint;		/* SHA-1 of the DER, hex: what x5t encodes */
	TimestampTz not_before;
	TimestampTz not_after;
} PcqCertificateInfo;

extern void pcq_certificate_info(PcqCertificateInfo *info);

/* ---- transport (http.c) ---- */

/* How a request ended, before anyone looks at the HTTP status. */
typedef enum PcqOutcome
{
	PCQ_PENDING = 0,			/* not sent yet, or in flight */
	PCQ_ANSWERED,				/* an HTTP status and a body were received */
	PCQ_TIMED_OUT,				/* pcqual.timeout or connect_timeout elapsed */
	PCQ_UNREACHABLE,			/* DNS, connect, or connection dropped */
	PCQ_TLS_REFUSED,			/* the server's certificate was not trusted */
	PCQ_TOO_LARGE				/* body exceeded the response size limit */
} PcqOutcome;

/* What a request is about, for messages: "customer X", "the token endpoint". */
typedef enum PcqSubject
{
	PCQ_SUBJECT_CUSTOMER,		/* subject_id is the customer's tenant id */
	PCQ_SUBJECT_TOKEN,
	PCQ_SUBJECT_CUSTOMER_LIST,
	PCQ_SUBJECT_VALIDATIONS,
	/* a customer's account validation status, its validation links: */
	PCQ_SUBJECT_VALIDATION_STATUS,	/* subject_id is the tenant id */
	PCQ_SUBJECT_CUSTOMER_VALIDATIONS	/* subject_id is the tenant id */
} PcqSubject;

/* Whether a request is about one customer (subject_id names it). */
static inline bool
pcq_subject_is_customer(PcqSubject subject)
{
	return subject == PCQ_SUBJECT_CUSTOMER ||
		subject == PCQ_SUBJECT_VALIDATION_STATUS ||
		subject == PCQ_SUBJECT_CUSTOMER_VALIDATIONS;
}

/* A transfer's curl state; private to http.c. */
typedef struct PcqTransfer PcqTransfer;

typedef struct PcqRequest
{
	/* set by the caller */
	char	   *url;
	PcqSubject	subject;
	char		subject_id[PCQ_GUID_SIZE];	/* the customer, when there is one */
	const char *method;			/* "GET" (NULL) or "POST" */
	char	   *post_body;		/* sent with POST */
	const char *post_content_type;	/* form or JSON */
	const char *bearer;			/* access token to send, or NULL */
	const char *continuation_token; /* MS-ContinuationToken, or NULL */
	char		request_id[PCQ_GUID_SIZE];

	/* set by the transport */
	char		correlation_id[PCQ_GUID_SIZE];
	PcqOutcome	outcome;
	long		status;
	char	   *body;			/* NUL-terminated, palloc'd */
	size_t		body_len;
	char		content_type[64];
	char		retry_after[64];
	char		transport_error[256];	/* curl's own words */
	int			attempts;		/* times it was sent */
	long		retry_refused_ms;	/* Retry-After beyond max_retry_wait */
	TimestampTz not_before;		/* a retry waits until then */
	PcqTransfer *transfer;
} PcqRequest;

/* The next request of a batch, or NULL when there is none. */
typedef PcqRequest *(*PcqNextRequest) (void *arg);

/* Called once per request when it is final (after its retries). */
typedef void (*PcqRequestDone) (PcqRequest *req, void *arg);

extern void pcq_request_init(PcqRequest *req, char *url, PcqSubject subject,
							 const char *subject_id);
extern void pcq_http_run(PcqSubject subject, PcqNextRequest next,
						 PcqRequestDone done, void *arg, int max_in_flight);
extern void pcq_http_run_one(PcqRequest *req);
extern int	pcq_http_disconnect(void);
extern const char *pcq_correlation_id(void);
extern void pcq_new_guid(char *dest);

/* ---- retries (retry.c) ---- */
extern long pcq_retry_delay_ms(PcqRequest *req);
extern long pcq_throttle_pause_ms(const PcqRequest *req);

/* ---- tokens (token.c) ---- */
typedef enum PcqAuthMode
{
	PCQ_AUTH_NONE,
	PCQ_AUTH_STATIC_TOKEN,		/* pcqual.access_token_file */
	PCQ_AUTH_APP_USER,			/* pcqual.refresh_token_file */
	PCQ_AUTH_APP_CERTIFICATE,	/* pcqual.client_certificate_file + key */
	PCQ_AUTH_APP_SECRET			/* pcqual.client_secret_file */
} PcqAuthMode;

extern PcqAuthMode pcq_auth_mode(void);
extern const char *pcq_access_token(bool *renewable);
struct PcqTokenClaims;
extern bool pcq_token_state(PcqTokenCacheState *state, struct PcqTokenClaims *claims);
extern void pcq_release_access_token(const char *token);
extern void pcq_forget_access_token(void);
extern void pcq_drop_access_token(void);
extern void pcq_http_run_authorized(PcqRequest *req);

/* ---- results shared by the SQL functions (functions.c) ---- */
struct ReturnSetInfo;
struct PcqFailure;
struct pg_uuid_t;

/* One customer's outcome: its rows (List of PcqQualification) or failure. */
typedef void (*PcqCustomerResult) (void *arg, const struct pg_uuid_t *tenant,
								   List *rows, const struct PcqFailure *failure,
								   int attempts);
extern void pcq_fetch_customers(const struct pg_uuid_t *ids, int ntenants,
								PcqCustomerResult deliver, void *arg);
extern void pcq_store_qualifications(struct ReturnSetInfo *rsinfo,
									 const char *tenant, List *rows);
extern Datum pcq_nullable_text(const char *s, bool *isnull);

/* ---- the batched LATERAL join (lateral.c) ---- */
extern void pcq_lateral_install(void);

/* ---- parsing (parse.c) ---- */
typedef struct PcqQualification
{
	char	   *qualification;
	char	   *vetting_status;		/* NULL when absent or JSON null */
	char	   *vetting_reason;
	bool		has_created_date;
	TimestampTz vetting_created_date;
	char	   *unparsed_date;	/* raw text of a date that is not ISO 8601 */
} PcqQualification;

typedef struct PcqTokenAnswer
{
	char	   *access_token;
	bool		access_token_unusable;	/* present, but not a header value */
	char	   *refresh_token;
	double		expires_in;		/* seconds; < 0 when absent */
} PcqTokenAnswer;

typedef struct PcqCustomer
{
	char	   *tenant_id;		/* companyProfile.tenantId, else id */
	char	   *company_name;
	char	   *domain;
	char	   *relationship;
} PcqCustomer;

typedef struct PcqCustomerPage
{
	List	   *customers;		/* of PcqCustomer */
	char	   *continuation_token; /* links.next's, or NULL on the last page */
} PcqCustomerPage;

typedef struct PcqValidationCode
{
	char	   *validation_id;
	char	   *organization_name;
	char	   *partner_id;
	bool		has_max_creates;
	int			max_creates;
	bool		has_remaining_creates;
	int			remaining_creates;
} PcqValidationCode;

/*
 * What was wrong with a body: text for the message, and the SQLSTATE when
 * it is not 22032 (invalid JSON text), e.g. 22P05 for a character the
 * database's encoding lacks.
 */
typedef struct PcqBodyProblem
{
	char	   *text;			/* NULL: nothing wrong */
	int			sqlstate;		/* 0: ERRCODE_INVALID_JSON_TEXT */
} PcqBodyProblem;

extern List *pcq_parse_qualifications(const char *body, size_t len,
									  PcqBodyProblem *problem);
extern bool pcq_parse_customer_page(const char *body, size_t len,
									PcqCustomerPage *page, PcqBodyProblem *problem);
extern List *pcq_parse_validation_codes(const char *body, size_t len,
										PcqBodyProblem *problem);

/* What an access token says about itself, when it is a JWT. */
typedef struct PcqTokenClaims
{
	bool		is_jwt;			/* false: nothing below is known */
	bool		has_exp;
	TimestampTz exp;
	bool		has_amr;
	bool		mfa;			/* amr lists "mfa" */
} PcqTokenClaims;

extern void pcq_parse_token_claims(const char *token, PcqTokenClaims *claims);

/* GET /v1/customers/{id}/validationStatus?type=account */
typedef struct PcqValidationStatus
{
	char	   *type;			/* NULL when absent */
	char	   *status;			/* Unknown, UnderReview, Allowed, NotAllowed */
	bool		has_last_updated;
	TimestampTz last_updated;
} PcqValidationStatus;

extern bool pcq_parse_validation_status(const char *body, size_t len,
										PcqValidationStatus *status,
										PcqBodyProblem *problem);
extern bool pcq_parse_iso8601(const char *text, TimestampTz *result);
extern void pcq_parse_error_body(const char *body, size_t len,
								 char **code, char **text);
extern void pcq_parse_token_answer(const char *body, size_t len,
								   PcqTokenAnswer *answer);
extern char *pcq_quotable_text(const char *text, size_t len);
extern bool pcq_is_header_token(const char *s);
extern void pcq_redact(char *body, size_t len, const char *secret);

/* ---- failures (report.c) ---- */

/* A failure, described before it is raised or recorded. */
typedef struct PcqFailure
{
	int			sqlstate;
	char	   *message;
	char	   *detail;
	char	   *hint;
} PcqFailure;

extern void pcq_describe_failure(const PcqRequest *req, PcqFailure *failure);
extern void pcq_describe_bad_body(const PcqRequest *req, const PcqBodyProblem *problem,
								  PcqFailure *failure);
extern void pcq_raise(const PcqFailure *failure, int elevel);
extern void pcq_report_failure(const PcqRequest *req, int elevel);
extern void pcq_report_bad_body(const PcqRequest *req, const PcqBodyProblem *problem,
								int elevel);
extern void pcq_report_token_refusal(const PcqRequest *req,
									 const PcqTokenAnswer *answer,
									 const char *error, const char *description);

/* ---- cumulative statistics (stats.c) ---- */
typedef enum PcqEndpoint
{
	PCQ_ENDPOINT_TOKEN,
	PCQ_ENDPOINT_QUALIFICATIONS,
	PCQ_ENDPOINT_CREATE,
	PCQ_ENDPOINT_CUSTOMERS,
	PCQ_ENDPOINT_VALIDATION_CODES,
	PCQ_ENDPOINT_VALIDATION_STATUS,
	PCQ_ENDPOINT_CUSTOMER_VALIDATIONS,
	PCQ_NUM_ENDPOINTS
} PcqEndpoint;

extern Size pcq_stats_shmem_size(void);
extern void pcq_stats_shmem_init(void);
extern PcqEndpoint pcq_request_endpoint(const PcqRequest *req);
extern void pcq_stat_attempt(const PcqRequest *req, double latency_ms);
extern void pcq_stat_retry(const PcqRequest *req, long delay_ms);
extern void pcq_stat_token_hit(void);
extern void pcq_stat_failure(const PcqRequest *req, const PcqFailure *failure);

#endif							/* PCQUAL_H */
