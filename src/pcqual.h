/*-------------------------------------------------------------------------
 *
 * pcqual.h
 *	  Declarations shared between the pcqual source files.
 *
 * pcqual.c		module initialisation and settings
 * credentials.c	secrets from private files; refresh-token write-back
 * assertion.c	signed client assertions (JWT) for certificate credentials
 * http.c		transport: libcurl's multi interface on one epoll set
 * retry.c		when a failed request is sent again
 * token.c		Azure AD access tokens, cached per backend
 * parse.c		response bodies: qualifications, customers, validation
 *				codes, error bodies, token answers
 * report.c		turning a failed request into an ERROR or WARNING
 * functions.c	the read functions (pc_qualifications, pc_disconnect)
 * write.c		pc_create_qualification
 * discover.c	pc_customers and pc_validation_codes
 *
 * Layering, lowest first: settings; parse, retry, credentials, assertion;
 * http, report; token; the SQL functions.  Nothing calls upwards.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PCQUAL_H
#define PCQUAL_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#define PCQUAL_VERSION "1.2"

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

extern bool pcq_is_set(const char *setting);
extern bool pcq_is_guid(const char *text);
extern char *pcq_api_url(const char *path);
extern char *pcq_token_url(void);
extern bool pcq_is_unreserved(unsigned char c);
extern void pcq_append_percent_encoded(StringInfo buf, const char *value);

/* ---- private files (credentials.c) ---- */
extern char *pcq_read_private_file(const char *path, const char *setting);
extern void pcq_wipe_and_free(char **p);

typedef struct PcqLockedFile PcqLockedFile;
extern PcqLockedFile *pcq_lock_private_file(const char *path, const char *setting);
extern char *pcq_locked_file_contents(PcqLockedFile *file);
extern bool pcq_replace_locked_file(PcqLockedFile *file, const char *contents);
extern void pcq_unlock_private_file(PcqLockedFile *file);
extern bool pcq_file_changed_since(const char *path, int64 *stamp);

/* ---- client assertions (assertion.c) ---- */
extern char *pcq_client_assertion(const char *audience);

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
	PCQ_SUBJECT_VALIDATIONS
} PcqSubject;

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
extern void pcq_http_run(PcqNextRequest next, PcqRequestDone done, void *arg,
						 int max_in_flight);
extern void pcq_http_run_one(PcqRequest *req);
extern int	pcq_http_disconnect(void);
extern const char *pcq_correlation_id(void);
extern void pcq_new_guid(char *dest);

/* ---- retries (retry.c) ---- */
extern long pcq_retry_delay_ms(PcqRequest *req);

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
extern void pcq_forget_access_token(void);
extern void pcq_http_run_authorized(PcqRequest *req);

/* ---- results shared by the SQL functions (functions.c) ---- */
struct ReturnSetInfo;
extern void pcq_store_qualifications(struct ReturnSetInfo *rsinfo,
									 const char *tenant, List *rows);
extern Datum pcq_nullable_text(const char *s, bool *isnull);

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

extern List *pcq_parse_qualifications(const char *body, size_t len,
									  char **problem);
extern bool pcq_parse_customer_page(const char *body, size_t len,
									PcqCustomerPage *page, char **problem);
extern List *pcq_parse_validation_codes(const char *body, size_t len,
										char **problem);
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
extern void pcq_describe_bad_body(const PcqRequest *req, const char *problem,
								  PcqFailure *failure);
extern void pcq_raise(const PcqFailure *failure, int elevel);
extern void pcq_report_failure(const PcqRequest *req, int elevel);
extern void pcq_report_bad_body(const PcqRequest *req, const char *problem,
								int elevel);
extern void pcq_report_token_refusal(const PcqRequest *req,
									 const PcqTokenAnswer *answer,
									 const char *error, const char *description);

#endif							/* PCQUAL_H */
