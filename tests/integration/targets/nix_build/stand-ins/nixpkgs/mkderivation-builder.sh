# shellcheck shell=sh
# TEST STAND-IN for stdenv's builder (see ../README.md): unpacks $src into the build
# directory and runs $installPhase with /bin/sh; runHook does nothing, makeWrapper
# writes a wrapper that prefixes PATH and execs the wrapped program.
set -eu
PATH=/usr/bin:/bin
export PATH
# nix passes the derivation's attributes as environment variables
src=${src:?the derivation has no src}
installPhase=${installPhase:?the derivation has no installPhase}

runHook() { :; }

makeWrapper() {
    wrapped=$1 wrapper=$2 prefix=
    shift 2
    while [ $# -gt 0 ]; do
        case $1 in
            --prefix)
                if [ "$2" != PATH ] || [ "$3" != : ]; then
                    echo "stand-in makeWrapper: only --prefix PATH : is supported" >&2
                    exit 64
                fi
                prefix=$4
                shift 4 ;;
            *) echo "stand-in makeWrapper: unsupported argument $1" >&2; exit 64 ;;
        esac
    done
    mkdir -p "$(dirname "$wrapper")"
    # The wrapper expands its caller's PATH when it runs, not now.
    cat > "$wrapper" <<WRAPPER
#!/bin/sh
PATH=$prefix\${PATH:+:\$PATH}
export PATH
exec $wrapped "\$@"
WRAPPER
    chmod 755 "$wrapper"
}

cp -R "$src"/. .
chmod -R u+w .
eval "$installPhase"
