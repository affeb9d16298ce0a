"""revledger from Python, start to finish: the permission system revokes, a gateway checks.

DESIGN.md §1: "super_admin changed at T" — John and Mike hold super_admin, Bruce does not;
only John's and Mike's tokens issued before T must go. Run it with the package installed
(`python3 -m pip install ./bindings/python` at the repository root):

    python3 bindings/python/example.py [ledger-path]
"""

import sys
import tempfile
from pathlib import Path

from revledger import Ledger, Scope

T = 1_700_000_000  # when super_admin's permissions changed (Unix seconds)


def main(path: Path) -> None:
    # The permission system: the one writer. revoke() returns once the record is
    # committed (every reader's next check sees it); sync() makes it durable.
    with Ledger.open_writer(path, max_token_lifetime=3600) as writer:
        writer.revoke(Scope.ROLE, "acme", "super_admin", at=T)
        writer.sync()

        # A gateway, in this process or any other: a reader of the same file.
        with Ledger.open_reader(path) as gateway:
            tokens = {  # sub -> roles, all issued a minute before the change
                "john": ["super_admin", "billing"],
                "mike": ["super_admin"],
                "bruce": ["viewer"],
            }
            for sub, roles in tokens.items():
                verdict = gateway.check("acme", sub, roles, client="spa", issued_at=T - 60)
                if verdict.revoked:
                    print(f"{sub}: 401 WWW-Authenticate: {verdict.www_authenticate()}")
                else:
                    print(f"{sub}: 200 ({verdict.description})")

            # John's client refreshes on the 401 and gets a token issued after T.
            verdict = gateway.check("acme", "john", tokens["john"], client="spa", issued_at=T + 1)
            print(f"john after refresh: revoked={verdict.revoked}")

            # A logout (OIDC back-channel) of one session, as of now.
            cutoff = writer.revoke_now(Scope.SESSION, "acme", "sid-42")
            verdict = gateway.check("acme", "bruce", ["viewer"], session="sid-42", issued_at=cutoff - 1)
            print(f"bruce's session sid-42 logged out: {verdict.scope} revoked={verdict.revoked}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "revocations.ledger")
