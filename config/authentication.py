"""API token authentication with its lookup as one fixed SQL statement.

DRF's TokenAuthentication, unchanged in what it accepts and answers, except that the token and its
user are read with SQL written once (config.rows) instead of a queryset compiled on every call:
raters' clients make a few hundred authenticated calls a second, and the compiled join cost more
CPU than the rest of the lookup.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from config import rows


@cache
def _token_sql(vendor: str) -> str:
    """Built once per database vendor (identifier quoting differs)."""
    user = get_user_model()
    return (
        f"SELECT {rows.columns(Token, 't')}, {rows.columns(user, 'u')} "  # noqa: S608
        f"FROM {Token._meta.db_table} t "
        f"JOIN {user._meta.db_table} u ON u.{user._meta.pk.column} = t.user_id "
        "WHERE t.key = %s"
    )


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as in DRF."""

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, Token]:
        with connection.cursor() as cursor:
            cursor.execute(_token_sql(connection.vendor), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        split = rows.width(Token)
        token = rows.instance(Token, "t", row[:split])
        user = rows.instance(get_user_model(), "u", row[split:])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token.user = user
        return user, token
