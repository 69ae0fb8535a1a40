# A harmless first step: show which system the base disk holds. Replace it
# with the first change this image needs, e.g.
#   apt-get update && apt-get -y upgrade
cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release
