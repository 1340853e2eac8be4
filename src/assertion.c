/*-------------------------------------------------------------------------
 *
 * assertion.c
 *	  Signed client assertions: App-only credentials from a certificate.
 *
 * Instead of a client secret, the app proves itself with a JWT signed by
 * the private key of a certificate registered with its Azure AD app
 * (Microsoft's recommendation for production):
 *	 header  {"alg": "RS256", "typ": "JWT", "x5t": base64url(SHA-1 of the DER)}
 *	 claims  {"aud": the token endpoint URL, "iss" = "sub" = the client id,
 *			  "jti": a fresh GUID, "nbf": now, "iat": now, "exp": now + 10 min}
 * sent as client_assertion with client_assertion_type jwt-bearer.  OpenSSL
 * signs it; PostgreSQL and libcurl already link it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "storage/fd.h"
#include "utils/timestamp.h"

#include "pcqual.h"

/* How long an assertion is valid: long enough for one token request. */
#define ASSERTION_LIFETIME_SECS 600

/* A certificate this close to its end is warned about. */
#define CERTIFICATE_WARNING_DAYS 30

/* base64url without padding (RFC 7515, section 2). */
static void
append_base64url(StringInfo buf, const unsigned char *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];

		appendStringInfoChar(buf, alphabet[(v >> 18) & 63]);
		appendStringInfoChar(buf, alphabet[(v >> 12) & 63]);
		appendStringInfoChar(buf, alphabet[(v >> 6) & 63]);
		appendStringInfoChar(buf, alphabet[v & 63]);
	}
	if (i < len)
	{
		uint32		v = data[i] << 16;

		if (i + 1 < len)
			v |= data[i + 1] << 8;
		appendStringInfoChar(buf, alphabet[(v >> 18) & 63]);
		appendStringInfoChar(buf, alphabet[(v >> 12) & 63]);
		if (i + 1 < len)
			appendStringInfoChar(buf, alphabet[(v >> 6) & 63]);
	}
}

/* OpenSSL's reason for the last failure, for a DETAIL. */
static const char *
openssl_reason(void)
{
	unsigned long code = ERR_get_error();
	const char *reason = code ? ERR_reason_error_string(code) : NULL;

	ERR_clear_error();
	return reason ? reason : "no reason given";
}

static void
credential_error(const char *path, const char *setting, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("could not use %s \"%s\" as %s", what, path, setting),
			 errdetail("OpenSSL: %s.", openssl_reason())));
}

static X509 *
read_certificate(void)
{
	const char *path = pcq_client_certificate_file;
	FILE	   *f = AllocateFile(path, "r");
	X509	   *cert;

	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open certificate file \"%s\" of pcqual.client_certificate_file: %m",
						path)));
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	FreeFile(f);
	if (cert == NULL)
		credential_error(path, "pcqual.client_certificate_file", "the PEM certificate");
	return cert;
}

/* A key that asks for a passphrase is refused rather than prompting. */
static int
no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	return 0;
}

static EVP_PKEY *
read_private_key(void)
{
	char	   *pem = pcq_read_private_file(pcq_client_key_file, "pcqual.client_key_file");
	BIO		   *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY   *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;

	BIO_free(bio);
	pcq_wipe_and_free(&pem);
	if (key == NULL)
		credential_error(pcq_client_key_file, "pcqual.client_key_file",
						 "the unencrypted PEM private key");
	if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA)
	{
		EVP_PKEY_free(key);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("the private key \"%s\" of pcqual.client_key_file is not an RSA key",
						pcq_client_key_file),
				 errhint("Azure AD client assertions are signed with RS256: use an RSA certificate and key.")));
	}
	return key;
}

/* Append a cJSON object, printed compactly, as base64url. */
static void
append_json_part(StringInfo buf, cJSON *obj)
{
	char	   *json = cJSON_PrintUnformatted(obj);

	if (json == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a client assertion")));
	append_base64url(buf, (const unsigned char *) json, strlen(json));
	cJSON_free(json);
}

static void
append_header(StringInfo buf, X509 *cert)
{
	unsigned char sha1[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	StringInfoData x5t;
	cJSON	   *header;

	if (X509_digest(cert, EVP_sha1(), sha1, &len) != 1)
		credential_error(pcq_client_certificate_file, "pcqual.client_certificate_file",
						 "the certificate");
	initStringInfo(&x5t);
	append_base64url(&x5t, sha1, len);

	header = cJSON_CreateObject();
	PG_TRY();
	{
		if (header == NULL ||
			cJSON_AddStringToObject(header, "alg", "RS256") == NULL ||
			cJSON_AddStringToObject(header, "typ", "JWT") == NULL ||
			cJSON_AddStringToObject(header, "x5t", x5t.data) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while building a client assertion")));
		append_json_part(buf, header);
	}
	PG_FINALLY();
	{
		cJSON_Delete(header);
	}
	PG_END_TRY();
}

static void
append_claims(StringInfo buf, const char *audience)
{
	char		jti[PCQ_GUID_SIZE];
	double		now = (double) time(NULL);
	cJSON	   *claims;

	pcq_new_guid(jti);
	claims = cJSON_CreateObject();
	PG_TRY();
	{
		if (claims == NULL ||
			cJSON_AddStringToObject(claims, "aud", audience) == NULL ||
			cJSON_AddStringToObject(claims, "iss", pcq_client_id) == NULL ||
			cJSON_AddStringToObject(claims, "sub", pcq_client_id) == NULL ||
			cJSON_AddStringToObject(claims, "jti", jti) == NULL ||
			cJSON_AddNumberToObject(claims, "nbf", now) == NULL ||
			cJSON_AddNumberToObject(claims, "iat", now) == NULL ||
			cJSON_AddNumberToObject(claims, "exp", now + ASSERTION_LIFETIME_SECS) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while building a client assertion")));
		append_json_part(buf, claims);
	}
	PG_FINALLY();
	{
		cJSON_Delete(claims);
	}
	PG_END_TRY();
}

/* Sign buf's "header.claims" with RS256 and append ".signature". */
static void
append_signature(StringInfo buf, EVP_PKEY *key)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t		siglen = 0;
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		EVP_DigestSign(ctx, NULL, &siglen, (unsigned char *) buf->data, buf->len) == 1;
	if (ok)
	{
		sig = palloc(siglen);
		ok = EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) buf->data, buf->len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	if (!ok)
		credential_error(pcq_client_key_file, "pcqual.client_key_file", "the private key");
	appendStringInfoChar(buf, '.');
	append_base64url(buf, sig, siglen);
	pfree(sig);
}

/* An ASN.1 time (a certificate's validity) as a timestamptz. */
static TimestampTz
asn1_timestamp(const ASN1_TIME *t)
{
	struct tm	tm;
	struct pg_tm pgtm;
	Timestamp	result;

	memset(&pgtm, 0, sizeof(pgtm));
	if (ASN1_TIME_to_tm(t, &tm) != 1)
		credential_error(pcq_client_certificate_file, "pcqual.client_certificate_file",
						 "the certificate");
	pgtm.tm_year = tm.tm_year + 1900;
	pgtm.tm_mon = tm.tm_mon + 1;
	pgtm.tm_mday = tm.tm_mday;
	pgtm.tm_hour = tm.tm_hour;
	pgtm.tm_min = tm.tm_min;
	pgtm.tm_sec = tm.tm_sec;
	if (tm2timestamp(&pgtm, 0, NULL, &result) != 0)
		return DT_NOEND;
	return result;				/* a UTC timestamp is a timestamptz */
}

static char *
subject_text(X509 *cert)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	long		len;
	char	   *result;

	if (bio == NULL ||
		X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0)
	{
		BIO_free(bio);
		credential_error(pcq_client_certificate_file, "pcqual.client_certificate_file",
						 "the certificate");
	}
	len = BIO_get_mem_data(bio, &data);
	result = pcq_quotable_text(data, len);
	BIO_free(bio);
	return result;
}

static void
describe_certificate(X509 *cert, PcqCertificateInfo *info)
{
	unsigned char sha1[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	StringInfoData hex;
	unsigned int i;

	if (X509_digest(cert, EVP_sha1(), sha1, &len) != 1)
		credential_error(pcq_client_certificate_file, "pcqual.client_certificate_file",
						 "the certificate");
	initStringInfo(&hex);
	for (i = 0; i < len; i++)
		appendStringInfo(&hex, "%02X", sha1[i]);
	info->thumbprint = hex.data;
	info->subject = subject_text(cert);
	info->not_before = asn1_timestamp(X509_get0_notBefore(cert));
	info->not_after = asn1_timestamp(X509_get0_notAfter(cert));
}

/* pcqual.client_certificate_file's subject, thumbprint and validity. */
void
pcq_certificate_info(PcqCertificateInfo *info)
{
	X509	   *volatile cert = NULL;

	memset(info, 0, sizeof(*info));
	ERR_clear_error();
	PG_TRY();
	{
		cert = read_certificate();
		describe_certificate(cert, info);
	}
	PG_FINALLY();
	{
		X509_free(cert);
		ERR_clear_error();
	}
	PG_END_TRY();
}

/*
 * A certificate that expires within CERTIFICATE_WARNING_DAYS is said so
 * once a day per backend, on the token path: before it fails a sync.
 */
static void
warn_if_expiring(X509 *cert)
{
	static pg_time_t last_warned = 0;
	PcqCertificateInfo info;
	TimestampTz now = GetCurrentTimestamp();
	long		secs;
	int			usecs;

	if (last_warned != 0 && timestamptz_to_time_t(now) - last_warned < SECS_PER_DAY)
		return;
	describe_certificate(cert, &info);
	if (info.not_after - now > (int64) CERTIFICATE_WARNING_DAYS * USECS_PER_DAY)
		return;
	last_warned = timestamptz_to_time_t(now);
	TimestampDifference(now, info.not_after, &secs, &usecs);
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("the certificate of pcqual.client_certificate_file expires in %ld days",
					secs / SECS_PER_DAY),
			 errdetail("Certificate \"%s\", thumbprint %s, valid until %s.",
					   info.subject, info.thumbprint, timestamptz_to_str(info.not_after)),
			 errhint("Register a new certificate with the Azure AD app and point pcqual.client_certificate_file and pcqual.client_key_file at it.")));
}

/*
 * A client assertion for the token endpoint at audience, signed with
 * pcqual.client_key_file for pcqual.client_certificate_file.
 */
char *
pcq_client_assertion(const char *audience)
{
	X509	   *volatile cert = NULL;
	EVP_PKEY   *volatile key = NULL;
	StringInfoData jwt;

	initStringInfo(&jwt);
	ERR_clear_error();
	PG_TRY();
	{
		cert = read_certificate();
		warn_if_expiring(cert);
		key = read_private_key();
		append_header(&jwt, cert);
		appendStringInfoChar(&jwt, '.');
		append_claims(&jwt, audience);
		append_signature(&jwt, key);
	}
	PG_FINALLY();
	{
		EVP_PKEY_free(key);
		X509_free(cert);
		ERR_clear_error();
	}
	PG_END_TRY();
	return jwt.data;
}
