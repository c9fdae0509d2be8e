"""Free-mail providers: a lead from one of these is a person, not evidence of a company."""

from __future__ import annotations

FREE_MAIL = "free_mail"
"""The `is_email_domain` value that stands for this list."""

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "qq.com",
        "163.com",
        "126.com",
        "zoho.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
        "orange.fr",
        "free.fr",
        "libero.it",
        "mail.com",
        "inbox.com",
    }
)


def business_domain(email: object) -> str:
    """The domain that identifies a company account; empty for free-mail or missing addresses."""
    domain = email_domain(email) if isinstance(email, str) else ""
    return "" if domain in FREE_MAIL_DOMAINS else domain


def email_domain(email: str) -> str:
    """The part after the last @, lower-cased; empty when there is none."""
    at = email.rfind("@")
    return email[at + 1 :].strip().lower() if at >= 0 else ""
