/*-------------------------------------------------------------------------
 *
 * pcqual.h
 *	  Declarations shared between the pcqual source files.
 *
 * pcqual.c	module initialisation and settings
 * http.c	transport: libcurl's multi interface driven by a WaitEventSet
 * retry.c	when a failed request is sent again
 * token.c	Azure AD access tokens, cached per backend
 * parse.c	response bodies: qualifications, error bodies, token answers
 * report.c	turning a failed request into an ERROR or WARNING
 * functions.c	the SQL-callable functions
 *
 *-------------------------------------------------------------------------
 */
#ifndef PCQUAL_H
#define PCQUAL_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

#define PCQUAL_VERSION "1.1"

/* A GUID in its 36-character text form, plus the terminator. */
#define PCQ_GUID_SIZE 37

/* ---- settings (pcqual.c) ---- */
extern char *pcq_base_url_setting;
extern char *pcq_authority_setting;
extern char *pcq_resource;
extern char *pcq_partner_tenant;
extern char *pcq_client_id;
extern char *pcq_client_secret;
extern char *pcq_refresh_token;
extern char *pcq_static_access_token;
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

extern const char *pcq_base_url(void);
extern const char *pcq_authority(void);

/* ---- transport (http.c) ---- */

/* How a request ended, before anyone looks at the HTTP status. */
typedef enum PcqOutcome
{
	PCQ_PENDING = 0,			/* not sent yet, or in flight */
	PCQ_ANSWERED,				/* an HTTP status and a body were received */
	PCQ_TIMED_OUT,				/* pcqual.timeout or connect_timeout elapsed */
	PCQ_UNREACHABLE,			/* DNS, connect, TLS, or connection dropped */
	PCQ_TOO_LARGE				/* body exceeded the response size limit */
} PcqOutcome;

typedef struct PcqRequest
{
	/* set by the caller */
	char	   *url;
	const char *tenant;			/* customer tenant, for messages */
	char	   *form_body;		/* POST this form body; NULL means GET */
	const char *bearer;			/* access token to send, or NULL */
	char		request_id[PCQ_GUID_SIZE];

	/* set by the transport */
	char		correlation_id[PCQ_GUID_SIZE];
	PcqOutcome	outcome;
	long		status;
	char	   *body;			/* NUL-terminated, palloc'd */
	size_t		body_len;
	char		content_type[64];
	char		retry_after[64];
	char		transport_error[256];
	int			attempts;		/* times it was sent */
	long		retry_refused_ms;	/* Retry-After beyond max_retry_wait */
	TimestampTz not_before;		/* a retry waits until then */

	/* private to http.c */
	void	   *easy;
	void	   *headers;
	size_t		body_cap;
} PcqRequest;

/* Called once per request when it is final (after its retries). */
typedef void (*PcqRequestDone) (PcqRequest *req, void *arg);

extern void pcq_request_init(PcqRequest *req, char *url, const char *tenant);
extern void pcq_http_run(PcqRequest **reqs, int nreqs, int max_in_flight,
						 PcqRequestDone done, void *done_arg);
extern const char *pcq_correlation_id(void);
extern void pcq_new_guid(char *dest);

/* ---- retries (retry.c) ---- */
extern long pcq_retry_delay_ms(PcqRequest *req);

/* ---- tokens (token.c) ---- */
extern const char *pcq_access_token(bool *from_cache);
extern void pcq_forget_access_token(void);

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
	double		expires_in;		/* seconds; < 0 when absent */
	char	   *error;
	char	   *error_description;
} PcqTokenAnswer;

extern List *pcq_parse_qualifications(const char *body, size_t len,
									  char **problem);
extern bool pcq_parse_iso8601(const char *text, TimestampTz *result);
extern void pcq_parse_error_body(const char *body, size_t len,
								 char **code, char **text);
extern void pcq_parse_token_answer(const char *body, size_t len,
								   PcqTokenAnswer *answer);

/* ---- failures (report.c) ---- */
extern void pcq_report_failure(const PcqRequest *req, int elevel);
extern void pcq_report_bad_body(const PcqRequest *req, const char *problem,
								int elevel);

#endif							/* PCQUAL_H */
