# TEST STAND-IN for stdenv's builder (see ../README.md): unpacks $src into the build
# directory and runs $installPhase with /bin/sh; runHook does nothing, makeWrapper
# writes a wrapper that prefixes PATH and execs the wrapped program.
set -eu
PATH=/usr/bin:/bin
export PATH

runHook() { :; }

makeWrapper() {
    wrapped=$1 wrapper=$2 prefix=
    shift 2
    while [ $# -gt 0 ]; do
        case $1 in
            --prefix)
                [ "$2" = PATH ] && [ "$3" = : ] || { echo "stand-in makeWrapper: only --prefix PATH : is supported" >&2; exit 64; }
                prefix=$4
                shift 4 ;;
            *) echo "stand-in makeWrapper: unsupported argument $1" >&2; exit 64 ;;
        esac
    done
    mkdir -p "$(dirname "$wrapper")"
    printf '#!/bin/sh\nPATH=%s${PATH:+:$PATH}\nexport PATH\nexec %s "$@"\n' "$prefix" "$wrapped" > "$wrapper"
    chmod 755 "$wrapper"
}

cp -R "$src"/. .
chmod -R u+w .
eval "$installPhase"
